//! Diesel schema, written by hand to match `migrations/order`.

diesel::table! {
    orders (id) {
        id -> Int8,
        user_id -> Text,
        biz_type -> Text,
        biz_id -> Text,
        description -> Text,
        total_fen -> Int8,
        status -> Text,
        pay_no -> Nullable<Int8>,
        channel -> Nullable<Text>,
        channel_trade_no -> Nullable<Text>,
        paid_at -> Nullable<Timestamptz>,
        closed_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        refunded_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    order_items (id) {
        id -> Int8,
        order_id -> Int8,
        goods_type -> Text,
        goods_id -> Text,
        goods_name -> Text,
        price_fen -> Int8,
        quantity -> Int4,
    }
}

diesel::joinable!(order_items -> orders (order_id));
diesel::allow_tables_to_appear_in_same_query!(orders, order_items);
