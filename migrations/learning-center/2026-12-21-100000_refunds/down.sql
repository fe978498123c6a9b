DROP TABLE course_refunds;
ALTER TABLE course_tables DROP CONSTRAINT course_tables_revoked_check,
    DROP COLUMN revoked_at, DROP COLUMN status;
UPDATE choose_courses SET status = 'chosen' WHERE status = 'refunded';
ALTER TABLE choose_courses DROP CONSTRAINT choose_courses_status_check;
ALTER TABLE choose_courses ADD CONSTRAINT choose_courses_status_check
    CHECK (status IN ('chosen', 'awaiting_payment'));
DROP INDEX choose_courses_pay_no_idx;
ALTER TABLE choose_courses DROP COLUMN pay_no;
