//! Diesel schema, written by hand to match `migrations/learning-center`.

diesel::table! {
    courses (id) {
        id -> Int8,
        name -> Text,
        charge -> Text,
        price_fen -> Int8,
        valid_days -> Int4,
    }
}

diesel::table! {
    choose_courses (id) {
        id -> Int8,
        user_id -> Text,
        course_id -> Int8,
        course_name -> Text,
        charge -> Text,
        price_fen -> Int8,
        valid_days -> Int4,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        pay_no -> Nullable<Int8>,
    }
}

diesel::table! {
    course_tables (id) {
        id -> Int8,
        choose_course_id -> Int8,
        user_id -> Text,
        course_id -> Int8,
        course_name -> Text,
        valid_from -> Timestamptz,
        valid_until -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        status -> Text,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    course_refunds (refund_no) {
        refund_no -> Int8,
        choose_course_id -> Int8,
        pay_no -> Int8,
        amount_fen -> Int8,
        refunded_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(choose_courses -> courses (course_id));
diesel::joinable!(course_tables -> choose_courses (choose_course_id));
diesel::joinable!(course_refunds -> choose_courses (choose_course_id));
diesel::allow_tables_to_appear_in_same_query!(
    courses,
    choose_courses,
    course_tables,
    course_refunds
);
