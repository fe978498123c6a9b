DROP TABLE channel_notifications;
DROP TABLE payments;
