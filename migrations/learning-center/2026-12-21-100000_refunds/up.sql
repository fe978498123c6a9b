-- Refunds revoke access (policy: `EnrolmentStatus` in crates/domain/src/status.rs).

-- The attempt that paid a choice, kept when its pay result enrols the student: a refund
-- result names only its attempt, and only refunds of that attempt count against the choice
-- (a duplicate payment's refund, from another attempt, never revokes anything).
ALTER TABLE choose_courses ADD COLUMN pay_no BIGINT;
CREATE UNIQUE INDEX choose_courses_pay_no_idx ON choose_courses (pay_no) WHERE pay_no IS NOT NULL;
ALTER TABLE choose_courses DROP CONSTRAINT choose_courses_status_check;
ALTER TABLE choose_courses ADD CONSTRAINT choose_courses_status_check
    CHECK (status IN ('chosen', 'awaiting_payment', 'refunded'));

-- A course table row is active or revoked; a new payment for the course renews it.
ALTER TABLE course_tables
    ADD COLUMN status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    ADD COLUMN revoked_at TIMESTAMPTZ,
    ADD CONSTRAINT course_tables_revoked_check CHECK ((status = 'revoked') = (revoked_at IS NOT NULL));

-- Each succeeded refund counted once against its choice (the refund number is the
-- channel's idempotency key too), so a refund result delivered twice, even under two
-- message ids, adds its amount once.
CREATE TABLE course_refunds (
    refund_no        BIGINT PRIMARY KEY,
    choose_course_id BIGINT NOT NULL REFERENCES choose_courses (id),
    pay_no           BIGINT NOT NULL,
    amount_fen       BIGINT NOT NULL CHECK (amount_fen > 0),
    refunded_at      TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX course_refunds_choice_idx ON course_refunds (choose_course_id);
