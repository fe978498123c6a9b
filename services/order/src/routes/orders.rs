//! The student's order API: create an order for a business record, pay it, look at it.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use paywire_domain::{
    BizType, ChooseCourseId, ChooseCourseStatus, Fen, OrderId, OrderStatus, PayChannel, PayNo,
    UserId,
};
use paywire_platform::auth::AuthenticatedUser;
use serde::{Deserialize, Serialize};
use tracing::field::{Empty, display};

use crate::AppState;
use crate::clients::CreatePayment;
use crate::error::OrderError;
use crate::store::{self, NewCourseOrder, Order};
use crate::timeout::ScheduleTimeout;

/// `POST /api/orders`. Unknown fields (a client-sent `total_fen`, `price`…) are ignored on
/// purpose: the price comes from the learning center only, so there is nothing to tamper with.
#[derive(Debug, Deserialize)]
pub struct CreateOrderBody {
    pub biz_type: BizType,
    pub biz_id: String,
}

#[derive(Debug, Deserialize)]
pub struct PayBody {
    /// Parsed by hand so a bad value is a clear `invalid_channel`, not a generic body error.
    pub channel: String,
}

#[derive(Debug, Serialize)]
pub struct OrderView {
    pub order_id: OrderId,
    pub status: OrderStatus,
    pub total_fen: Fen,
    pub biz_type: BizType,
    pub biz_id: String,
    pub description: String,
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

#[derive(Debug, Serialize)]
pub struct PayView {
    pub pay_no: PayNo,
    pub channel: PayChannel,
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

#[tracing::instrument(
    skip_all,
    fields(user_id = %user.0, biz_type = %body.biz_type, biz_id = %body.biz_id, order_id = Empty)
)]
pub async fn create(
    user: AuthenticatedUser,
    state: web::Data<AppState>,
    body: web::Json<CreateOrderBody>,
) -> Result<HttpResponse, OrderError> {
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
            return Ok(HttpResponse::Ok().json(OrderView::from(&order)));
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
    match store::insert_course_order(&mut conn, &new, &timeout).await? {
        Some(order) => {
            record_order(&order);
            tracing::info!(total_fen = order.total.get(), "order created");
            Ok(HttpResponse::Created().json(OrderView::from(&order)))
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
            Ok(HttpResponse::Ok().json(OrderView::from(&order)))
        }
    }
}

/// The caller's own order; someone else's is indistinguishable from a missing one.
async fn own_order(state: &AppState, id: OrderId, caller: &UserId) -> Result<Order, OrderError> {
    let mut conn = state.pool.get().await?;
    match store::find(&mut conn, id).await? {
        Some(order) if order.user_id == *caller => Ok(order),
        _ => Err(OrderError::OrderNotFound(id)),
    }
}

#[tracing::instrument(skip_all, fields(user_id = %user.0, order_id = %path))]
pub async fn get(
    user: AuthenticatedUser,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
) -> Result<HttpResponse, OrderError> {
    let order = own_order(&state, path.into_inner(), &user.0).await?;
    Ok(HttpResponse::Ok().json(OrderView::from(&order)))
}

#[tracing::instrument(
    skip_all,
    fields(user_id = %user.0, order_id = %path, channel = Empty, pay_no = Empty)
)]
pub async fn pay(
    user: AuthenticatedUser,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
    body: web::Json<PayBody>,
) -> Result<HttpResponse, OrderError> {
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
    Ok(HttpResponse::Ok().json(PayView {
        pay_no: attempt.pay_no,
        channel: attempt.channel,
        code_url: attempt.code_url,
        expires_at: attempt.expires_at,
    }))
}

/// `GET /api/orders/{order_id}/pay-result`.
#[derive(Debug, Serialize)]
pub struct PayResultView {
    pub order_id: OrderId,
    pub status: OrderStatus,
    /// The order is paid, or the channel says one of its attempts is (the order row follows
    /// when the pay result arrives through the broker).
    pub paid: bool,
}

/// The student's "I have paid" button (seed `001`): an unpaid order makes the gateway
/// actively query the channel, the same path as the gateway's own compensation.
#[tracing::instrument(skip_all, fields(user_id = %user.0, order_id = %path))]
pub async fn pay_result(
    user: AuthenticatedUser,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
) -> Result<HttpResponse, OrderError> {
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
    Ok(HttpResponse::Ok().json(PayResultView {
        order_id: order.id,
        status,
        paid,
    }))
}
