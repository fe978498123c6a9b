//! What an order pays for.

crate::text_enum! {
    /// The business record type an order belongs to (xuecheng dictionary 602).
    BizType, "biz_type" {
        /// 60201: a paid course; `biz_id` is a choose-course id in the learning center.
        Course = "course",
    }
}
