-- One OPEN order per business record: after an order expired (`closed`) the student may
-- order the same record again. The partial index still makes a concurrent duplicate
-- "create" lose at the database.
ALTER TABLE orders DROP CONSTRAINT orders_biz_type_biz_id_key;
CREATE UNIQUE INDEX orders_open_biz_idx ON orders (biz_type, biz_id) WHERE status <> 'closed';
-- Every order of a record, closed ones included, for lookups by record.
CREATE INDEX orders_biz_idx ON orders (biz_type, biz_id);
