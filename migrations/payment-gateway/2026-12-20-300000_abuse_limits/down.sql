DROP TABLE refused_notifications;
ALTER TABLE payments DROP COLUMN last_synced_at;
