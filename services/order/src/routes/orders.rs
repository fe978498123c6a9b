//! The student's order API: create an order for a business record, pay it, look at it.

use actix_web::web;
use chrono::{DateTime, Utc};
use paywire_contracts::ErrorBody;
use paywire_contracts::openapi::answers::{AuthErrors, RateLimited, RequestErrors, UpstreamErrors};
use paywire_domain::{
    BizType, ChooseCourseId, ChooseCourseStatus, Fen, OrderId, OrderStatus, PayChannel, PayNo,
    UserId,
};
use paywire_platform::answer::Stored;
use paywire_platform::auth::AuthenticatedUser;
use serde::{Deserialize, Serialize};
use tracing::field::{Empty, display};
use utoipa::ToSchema;

use crate::AppState;
use crate::clients::CreatePayment;
use crate::error::OrderError;
use crate::store::{self, NewCourseOrder, Order};
use crate::timeout::ScheduleTimeout;

/// `POST /api/orders`. Unknown fields (a client-sent `total_fen`, `price`…) are ignored on
/// purpose: the price comes from the learning center only, so there is nothing to tamper with.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateOrderBody {
    pub biz_type: BizType,
    /// The business record to pay: the `choose_course_id` from the learning center.
    #[schema(examples("7181245133201408"))]
    pub biz_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PayBody {
    /// Parsed by hand so a bad value is a clear `invalid_channel`, not a generic body error.
    #[schema(value_type = PayChannel)]
    pub channel: String,
}

/// One order, as its student sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    pub order_id: OrderId,
    pub status: OrderStatus,
    pub total_fen: Fen,
    pub biz_type: BizType,
    pub biz_id: String,
    pub description: String,
    /// The attempt that paid (or the latest one), once there is one.
    pub pay_no: Option<PayNo>,
    pub channel: Option<PayChannel>,
    pub paid_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<&Order> for OrderView {
    fn from(o: &Order) -> Self {
        OrderView {
            order_id: o.id,
            status: o.status,
            total_fen: o.total,
            biz_type: o.biz_type,
            biz_id: o.biz_id.clone(),
            description: o.description.clone(),
            pay_no: o.pay_no,
            channel: o.channel,
            paid_at: o.paid_at,
            created_at: o.created_at,
        }
    }
}

/// The attempt to pay.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayView {
    pub pay_no: PayNo,
    pub channel: PayChannel,
    /// QR code content to show the payer (e.g. `weixin://wxpay/bizpayurl?pr=…`).
    pub code_url: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// An order found through a business record is the caller's, or it "does not exist".
fn owned_by_biz(order: Order, caller: &UserId) -> Result<Order, OrderError> {
    if order.user_id == *caller {
        Ok(order)
    } else {
        Err(OrderError::BizNotFound)
    }
}

fn record_order(order: &Order) {
    tracing::Span::current().record("order_id", display(order.id));
}

/// Create the order for a business record
///
/// Idempotent per business record: the open (unpaid or paid) order that already exists for
/// `biz_id` is answered with 200 instead of creating another. A `closed` (expired) order
/// does not count: ordering the record again creates a new order. The price comes from the
/// learning center's record of the choice, which must belong to the caller and await
/// payment; a price sent by the client is ignored. Limited per user
/// (`rate_limit.create_order`, default 30 a minute).
#[utoipa::path(
    post,
    path = "/api/orders",
    operation_id = "createOrder",
    request_body = CreateOrderBody,
    responses(
        (status = 201, description = "a new order", body = OrderView),
        (status = 200, description = "the existing order of this business record", body = OrderView),
        (status = 404, description = "`biz_not_found`: no such record, or not the caller's", body = ErrorBody),
        (status = 409, description = "`biz_not_payable`: already chosen, or free", body = ErrorBody),
        RequestErrors,
        UpstreamErrors,
        RateLimited,
    )
)]
#[tracing::instrument(
    skip_all,
    fields(user_id = %user.0, biz_type = %body.biz_type, biz_id = %body.biz_id, order_id = Empty)
)]
pub async fn create(
    user: AuthenticatedUser,
    state: web::Data<AppState>,
    body: web::Json<CreateOrderBody>,
) -> Result<Stored<OrderView>, OrderError> {
    let caller = &user.0;
    let CreateOrderBody { biz_type, biz_id } = body.into_inner();
    let choose_course_id = match biz_type {
        BizType::Course => biz_id
            .parse::<ChooseCourseId>()
            .map_err(|e| OrderError::InvalidRequest(e.to_string()))?,
    };
    // The canonical spelling, so "07" and "7" cannot become two orders for one record.
    let biz_id = choose_course_id.to_string();

    {
        let mut conn = state.pool.get().await?;
        if let Some(existing) = store::find_open_by_biz(&mut conn, biz_type, &biz_id).await? {
            let order = owned_by_biz(existing, caller)?;
            record_order(&order);
            return Ok(Stored::Existing(OrderView::from(&order)));
        }
        // The connection goes back to the pool before the upstream call.
    }

    let record = state
        .learning_center
        .choose_course(choose_course_id)
        .await?
        .ok_or(OrderError::BizNotFound)?;
    if record.user_id != *caller {
        return Err(OrderError::BizNotFound);
    }
    if record.status != ChooseCourseStatus::AwaitingPayment {
        return Err(OrderError::BizNotPayable(format!(
            "course choice is {}",
            record.status
        )));
    }
    if record.price_fen.get() == 0 {
        return Err(OrderError::BizNotPayable("the course is free".into()));
    }

    let new = NewCourseOrder {
        id: state.ids.next(),
        item_id: state.ids.next(),
        user_id: caller.clone(),
        choose_course_id,
        course_id: record.course_id,
        course_name: record.course_name,
        price: record.price_fen,
    };
    // The timeout is scheduled in the same transaction as the order: no order without one.
    let timeout = ScheduleTimeout {
        event_id: state.ids.next(),
        delay_queue: state.delay_queue.clone(),
    };
    let mut conn = state.pool.get().await?;
    let stored = match store::insert_course_order(&mut conn, &new, &timeout).await? {
        Some(order) => {
            record_order(&order);
            tracing::info!(total_fen = order.total.get(), "order created");
            Stored::Created(order)
        }
        None => {
            // A concurrent create for the same record won; answer with its order.
            let winner = store::find_open_by_biz(&mut conn, biz_type, &biz_id)
                .await?
                .ok_or_else(|| {
                    OrderError::CorruptRow(format!("order for {biz_type}/{biz_id} vanished"))
                })?;
            let order = owned_by_biz(winner, caller)?;
            record_order(&order);
            Stored::Existing(order)
        }
    };
    Ok(stored.map(|order| OrderView::from(&order)))
}

/// The caller's own order; someone else's is indistinguishable from a missing one.
async fn own_order(state: &AppState, id: OrderId, caller: &UserId) -> Result<Order, OrderError> {
    let mut conn = state.pool.get().await?;
    match store::find(&mut conn, id).await? {
        Some(order) if order.user_id == *caller => Ok(order),
        _ => Err(OrderError::OrderNotFound(id)),
    }
}

/// One of the caller's orders
#[utoipa::path(
    get,
    path = "/api/orders/{order_id}",
    operation_id = "getOrder",
    params(("order_id" = OrderId, Path)),
    responses(
        (status = 200, description = "the order", body = OrderView),
        (status = 404, description = "`order_not_found`: no such order, or not the caller's", body = ErrorBody),
        RequestErrors,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0, order_id = %path))]
pub async fn get(
    user: AuthenticatedUser,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
) -> Result<web::Json<OrderView>, OrderError> {
    let order = own_order(&state, path.into_inner(), &user.0).await?;
    Ok(web::Json(OrderView::from(&order)))
}

/// Start (or resume) paying an unpaid order
///
/// Asks the payment gateway for a payment attempt at `channel` and answers its QR code
/// content. A still-valid unpaid attempt of the same channel is reused. Limited per user
/// (`rate_limit.pay`, default 30 a minute).
#[utoipa::path(
    post,
    path = "/api/orders/{order_id}/pay",
    operation_id = "payOrder",
    params(("order_id" = OrderId, Path)),
    request_body = PayBody,
    responses(
        (status = 200, description = "the attempt to pay", body = PayView),
        (status = 400, description = "`invalid_channel`, `channel_not_enabled`, `invalid_request`", body = ErrorBody),
        (status = 404, description = "`order_not_found`", body = ErrorBody),
        (
            status = 409,
            description = "`order_already_paid`, `order_closed` (also when the gateway already closed the order on timeout), `order_refunded`",
            body = ErrorBody
        ),
        AuthErrors,
        UpstreamErrors,
        RateLimited,
    )
)]
#[tracing::instrument(
    skip_all,
    fields(user_id = %user.0, order_id = %path, channel = Empty, pay_no = Empty)
)]
pub async fn pay(
    user: AuthenticatedUser,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
    body: web::Json<PayBody>,
) -> Result<web::Json<PayView>, OrderError> {
    let channel: PayChannel = body
        .channel
        .parse()
        .map_err(|e: paywire_domain::ParseError| OrderError::InvalidChannel(e.to_string()))?;
    tracing::Span::current().record("channel", display(channel));
    let order = own_order(&state, path.into_inner(), &user.0).await?;
    match order.status {
        OrderStatus::Unpaid => {}
        OrderStatus::Paid => return Err(OrderError::OrderAlreadyPaid(order.id)),
        OrderStatus::Closed => return Err(OrderError::OrderClosed(order.id)),
        OrderStatus::Refunded => return Err(OrderError::OrderRefunded(order.id)),
    }
    let attempt = state
        .payment_gateway
        .create_payment(&CreatePayment {
            order_id: order.id,
            user_id: order.user_id.clone(),
            amount_fen: order.total,
            channel,
            description: order.description.clone(),
            biz_type: order.biz_type,
            biz_id: order.biz_id.clone(),
        })
        .await?;
    tracing::Span::current().record("pay_no", display(attempt.pay_no));
    Ok(web::Json(PayView {
        pay_no: attempt.pay_no,
        channel: attempt.channel,
        code_url: attempt.code_url,
        expires_at: attempt.expires_at,
    }))
}

/// Whether an order is paid.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayResultView {
    pub order_id: OrderId,
    pub status: OrderStatus,
    /// The order is paid, or the channel says one of its attempts is (the order row follows
    /// when the pay result arrives through the broker).
    pub paid: bool,
}

/// The student's "I have paid" button
///
/// For an unpaid order, the payment gateway actively queries the channel for every unpaid
/// attempt (`POST /internal/orders/{order_id}/payments/sync`), the same path as the
/// gateway's own compensation; an attempt found paid is recorded there exactly as if its
/// callback had come. `paid` is true when the order is paid or the channel says it is;
/// `status` is the order's own status, which becomes `paid` once the pay result arrives
/// through the broker. Paid and closed orders are answered without asking the gateway. A
/// refunded order answers `status: refunded`, `paid: true` (it was paid; the money went
/// back since).
///
/// Limited per user (`rate_limit.pay_result`, default 120 a minute), and whatever the
/// client does the gateway asks the channel about an attempt at most once every
/// `payment.sync_min_interval_secs` (default 5); in between the answer comes from what is
/// recorded.
#[utoipa::path(
    get,
    path = "/api/orders/{order_id}/pay-result",
    operation_id = "getPayResult",
    params(("order_id" = OrderId, Path)),
    responses(
        (status = 200, description = "whether the order is paid", body = PayResultView),
        (status = 404, description = "`order_not_found`: no such order, or not the caller's", body = ErrorBody),
        RequestErrors,
        UpstreamErrors,
        RateLimited,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0, order_id = %path))]
pub async fn pay_result(
    user: AuthenticatedUser,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
) -> Result<web::Json<PayResultView>, OrderError> {
    let order = own_order(&state, path.into_inner(), &user.0).await?;
    let (status, paid) = match order.status {
        OrderStatus::Paid => (OrderStatus::Paid, true),
        OrderStatus::Closed => (OrderStatus::Closed, false),
        // It was paid; the money went back since.
        OrderStatus::Refunded => (OrderStatus::Refunded, true),
        OrderStatus::Unpaid => {
            let synced = state.payment_gateway.sync_payments(order.id).await?;
            // The pay result may have landed while the gateway was asking the channel.
            let now = own_order(&state, order.id, &user.0).await?;
            (now.status, synced.paid || now.status == OrderStatus::Paid)
        }
    };
    Ok(web::Json(PayResultView {
        order_id: order.id,
        status,
        paid,
    }))
}
