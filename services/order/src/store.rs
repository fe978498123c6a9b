//! Orders in PostgreSQL. Rows are parsed into domain types on the way out, so a corrupt
//! row is an error here rather than a surprise in a handler.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::DecoratableTarget;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use paywire_contracts::PayResultV1;
use paywire_domain::{
    BizType, ChooseCourseId, CourseId, Fen, OrderId, OrderStatus, PayChannel, PayNo, UserId,
};

use crate::error::OrderError;
use crate::schema::{order_items, orders};
use crate::timeout::ScheduleTimeout;
use paywire_platform::db::first_parsed;

/// An order as the rest of the service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub biz_type: BizType,
    pub biz_id: String,
    pub description: String,
    pub total: Fen,
    pub status: OrderStatus,
    pub pay_no: Option<PayNo>,
    pub channel: Option<PayChannel>,
    pub channel_trade_no: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub refunded_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = orders, check_for_backend(diesel::pg::Pg))]
struct OrderRow {
    id: i64,
    user_id: String,
    biz_type: String,
    biz_id: String,
    description: String,
    total_fen: i64,
    status: String,
    pay_no: Option<i64>,
    channel: Option<String>,
    channel_trade_no: Option<String>,
    paid_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    refunded_at: Option<DateTime<Utc>>,
}

impl TryFrom<OrderRow> for Order {
    type Error = OrderError;

    fn try_from(r: OrderRow) -> Result<Self, OrderError> {
        let corrupt = |e: paywire_domain::ParseError| {
            OrderError::CorruptRow(format!("orders.id={}: {e}", r.id))
        };
        Ok(Order {
            id: OrderId::from(r.id),
            user_id: UserId::parse(&r.user_id).map_err(corrupt)?,
            biz_type: r.biz_type.parse().map_err(corrupt)?,
            biz_id: r.biz_id.clone(),
            description: r.description.clone(),
            total: Fen::new(r.total_fen).map_err(corrupt)?,
            status: r.status.parse().map_err(corrupt)?,
            pay_no: r.pay_no.map(PayNo::from),
            channel: r
                .channel
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(corrupt)?,
            channel_trade_no: r.channel_trade_no.clone(),
            paid_at: r.paid_at,
            closed_at: r.closed_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            refunded_at: r.refunded_at,
        })
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = orders)]
struct NewOrderRow<'a> {
    id: i64,
    user_id: &'a str,
    biz_type: &'a str,
    biz_id: &'a str,
    description: &'a str,
    total_fen: i64,
    status: &'a str,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = order_items)]
struct NewItemRow<'a> {
    id: i64,
    order_id: i64,
    goods_type: &'a str,
    goods_id: &'a str,
    goods_name: &'a str,
    price_fen: i64,
    quantity: i32,
}

/// A course order to create: one item, priced by the learning center.
#[derive(Debug, Clone)]
pub struct NewCourseOrder {
    pub id: OrderId,
    pub item_id: i64,
    pub user_id: UserId,
    pub choose_course_id: ChooseCourseId,
    pub course_id: CourseId,
    pub course_name: String,
    pub price: Fen,
}

/// Inserts the order, its item and its timeout message (outbox) in one transaction.
/// Returns `None` when an open order for the same business record already exists (a
/// concurrent create won): the caller reads it.
pub async fn insert_course_order(
    conn: &mut AsyncPgConnection,
    new: &NewCourseOrder,
    timeout: &ScheduleTimeout,
) -> Result<Option<Order>, OrderError> {
    let biz_id = new.choose_course_id.to_string();
    let course_id = new.course_id.to_string();
    conn.transaction::<_, OrderError, _>(async |conn| {
        let row: Option<OrderRow> = diesel::insert_into(orders::table)
            .values(NewOrderRow {
                id: new.id.get(),
                user_id: new.user_id.as_str(),
                biz_type: BizType::Course.as_str(),
                biz_id: &biz_id,
                description: &new.course_name,
                total_fen: new.price.get(),
                status: OrderStatus::Unpaid.as_str(),
            })
            // The partial unique index `orders_open_biz_idx`: one open order per record.
            .on_conflict((orders::biz_type, orders::biz_id))
            .filter_target(orders::status.ne(OrderStatus::Closed.as_str()))
            .do_nothing()
            .returning(OrderRow::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        let Some(row) = row else {
            return Ok(None);
        };
        diesel::insert_into(order_items::table)
            .values(NewItemRow {
                id: new.item_id,
                order_id: new.id.get(),
                goods_type: BizType::Course.as_str(),
                goods_id: &course_id,
                goods_name: &new.course_name,
                price_fen: new.price.get(),
                quantity: 1,
            })
            .execute(conn)
            .await?;
        let order = Order::try_from(row)?;
        paywire_messaging::outbox::enqueue(conn, &timeout.message(&order)?).await?;
        Ok(Some(order))
    })
    .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: OrderId) -> Result<Option<Order>, OrderError> {
    first_parsed(
        conn,
        orders::table.find(id.get()).select(OrderRow::as_select()),
    )
    .await
}

/// The business record's open (unpaid or paid) order; closed ones are history.
pub async fn find_open_by_biz(
    conn: &mut AsyncPgConnection,
    biz_type: BizType,
    biz_id: &str,
) -> Result<Option<Order>, OrderError> {
    first_parsed(
        conn,
        orders::table
            .filter(orders::biz_type.eq(biz_type.as_str()))
            .filter(orders::biz_id.eq(biz_id))
            .filter(orders::status.ne(OrderStatus::Closed.as_str()))
            .select(OrderRow::as_select()),
    )
    .await
}

/// An order item as stored (read back by tests and future order views).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = order_items, check_for_backend(diesel::pg::Pg))]
pub struct OrderItem {
    pub id: i64,
    pub order_id: i64,
    pub goods_type: String,
    pub goods_id: String,
    pub goods_name: String,
    pub price_fen: i64,
    pub quantity: i32,
}

pub async fn items(
    conn: &mut AsyncPgConnection,
    order_id: OrderId,
) -> Result<Vec<OrderItem>, OrderError> {
    Ok(order_items::table
        .filter(order_items::order_id.eq(order_id.get()))
        .select(OrderItem::as_select())
        .order(order_items::id)
        .load(conn)
        .await?)
}

/// Guarded `unpaid → paid` with the attempt that paid. Returns whether this call moved it.
pub async fn set_paid(
    conn: &mut AsyncPgConnection,
    event: &PayResultV1,
) -> Result<bool, OrderError> {
    let rows = diesel::update(
        orders::table
            .filter(orders::id.eq(event.order_id.get()))
            .filter(orders::status.eq_any(OrderStatus::Paid.source_names())),
    )
    .set((
        orders::status.eq(OrderStatus::Paid.as_str()),
        orders::pay_no.eq(Some(event.pay_no.get())),
        orders::channel.eq(Some(event.channel.as_str())),
        orders::channel_trade_no.eq(Some(event.channel_trade_no.as_str())),
        orders::paid_at.eq(Some(event.paid_at)),
        orders::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    Ok(rows == 1)
}

/// Guarded `paid → refunded`, only for the attempt that paid the order. Returns whether
/// this call moved it.
pub async fn set_refunded(
    conn: &mut AsyncPgConnection,
    id: OrderId,
    pay_no: PayNo,
    refunded_at: DateTime<Utc>,
) -> Result<bool, OrderError> {
    let rows = diesel::update(
        orders::table
            .filter(orders::id.eq(id.get()))
            .filter(orders::pay_no.eq(pay_no.get()))
            .filter(orders::status.eq_any(OrderStatus::Refunded.source_names())),
    )
    .set((
        orders::status.eq(OrderStatus::Refunded.as_str()),
        orders::refunded_at.eq(Some(refunded_at)),
        orders::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    Ok(rows == 1)
}

/// Guarded `unpaid → closed` (order expiry, after the gateway closed every attempt).
/// Returns whether this call moved it.
pub async fn close(conn: &mut AsyncPgConnection, id: OrderId) -> Result<bool, OrderError> {
    let rows = diesel::update(
        orders::table
            .filter(orders::id.eq(id.get()))
            .filter(orders::status.eq_any(OrderStatus::Closed.source_names())),
    )
    .set((
        orders::status.eq(OrderStatus::Closed.as_str()),
        orders::closed_at.eq(Some(Utc::now())),
        orders::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    Ok(rows == 1)
}
