-- Fails when a record has a closed order and a newer one: the old rule cannot hold them.
DROP INDEX orders_biz_idx;
DROP INDEX orders_open_biz_idx;
ALTER TABLE orders ADD CONSTRAINT orders_biz_type_biz_id_key UNIQUE (biz_type, biz_id);
