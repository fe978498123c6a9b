DROP INDEX payments_paid_at;
DROP TABLE reconciliation;
DROP TABLE reconciliation_runs;
