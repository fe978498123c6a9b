//! Diesel schema, written by hand to match `migrations/payment-gateway`.

diesel::table! {
    payments (pay_no) {
        pay_no -> Int8,
        order_id -> Int8,
        user_id -> Text,
        biz_type -> Text,
        biz_id -> Text,
        channel -> Text,
        amount_fen -> Int8,
        description -> Text,
        status -> Text,
        code_url -> Nullable<Text>,
        expires_at -> Timestamptz,
        channel_trade_no -> Nullable<Text>,
        paid_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    channel_notifications (id) {
        id -> Int8,
        channel -> Text,
        pay_no -> Nullable<Int8>,
        outcome -> Text,
        detail -> Nullable<Text>,
        received_at -> Timestamptz,
    }
}
