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
    /// The sweeper's columns of `payments`, and the creating request's trace context,
    /// kept apart so the main view stays within diesel's default 16 columns.
    #[sql_name = "payments"]
    payment_checks (pay_no) {
        pay_no -> Int8,
        status -> Text,
        next_check_at -> Nullable<Timestamptz>,
        check_attempts -> Int4,
        traceparent -> Nullable<Text>,
    }
}

diesel::table! {
    closed_orders (order_id) {
        order_id -> Int8,
        closed_at -> Timestamptz,
    }
}

diesel::table! {
    refunds (refund_no) {
        refund_no -> Int8,
        pay_no -> Int8,
        order_id -> Int8,
        channel -> Text,
        amount_fen -> Int8,
        reason -> Text,
        status -> Text,
        channel_refund_id -> Nullable<Text>,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_error -> Nullable<Text>,
        refunded_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        request_id -> Nullable<Text>,
        note -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(payments, refunds);

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
