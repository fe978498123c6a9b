//! Reconciliation against the channels' statements, for operators (`cargo xtask
//! reconcile`); the daily job does the same for yesterday by itself.

use actix_web::web;
use chrono::Utc;
use paywire_contracts::ErrorBody;
use paywire_contracts::openapi::answers::{CallerErrors, RequestErrors};
use paywire_contracts::reconciliation::{ReconciliationReport, RunReconciliation};
use paywire_platform::auth::{FromOperator, ServiceCaller};

use crate::AppState;
use crate::error::GatewayError;
use crate::reconcile::{has_statement, reconcile_day};

/// Reconcile a day with the channels' statements (operators)
///
/// Downloads the statement of `date` (China Standard Time) from `channel`, or from every
/// enabled channel, verifies it (WeChat Pay: the SHA1 its signed answer announced;
/// Alipay: each file's CRC-32 in the zip; both: the statement's own totals) and compares
/// it with the gateway's attempts and refunds. A payment the channel took that we had not
/// recorded is recorded as its callback would have been (`pay.result.v1` through the
/// outbox, or a refund for a closed order); every other difference is stored `open` for
/// an operator. One `reconciliation` row per discrepancy; running a day again finds the
/// same rows and adds none (`found_now` 0). The answer lists every discrepancy of the day.
/// A day in the future is `400 invalid_request`, as is a channel whose statement is not
/// read (`wechat_v2`); a channel not enabled here `400 channel_not_enabled`. Without
/// `channel`: every enabled channel with a statement (WeChat Pay v3, Alipay).
#[utoipa::path(
    post,
    path = "/internal/reconciliation",
    operation_id = "reconcile",
    tag = "internal",
    security(("serviceToken" = ["operator"])),
    request_body = RunReconciliation,
    responses(
        CallerErrors,
        (status = 200, description = "the day reconciled, per channel", body = ReconciliationReport),
        (status = 409, description = "`reconciliation_running`: another run holds that channel's day", body = ErrorBody),
        (status = 502, description = "`statement_refused`: the statement failed its check, nothing was compared; `channel_rejected`", body = ErrorBody),
        (status = 503, description = "`channel_unavailable`: the statement could not be fetched; retry later", body = ErrorBody),
        RequestErrors,
    )
)]
#[tracing::instrument(skip_all, fields(date = %body.date))]
pub async fn run(
    _caller: ServiceCaller<FromOperator>,
    state: web::Data<AppState>,
    body: web::Json<RunReconciliation>,
) -> Result<web::Json<ReconciliationReport>, GatewayError> {
    let request = body.into_inner();
    let today = Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00"))
        .date_naive();
    if request.date > today {
        return Err(GatewayError::InvalidRequest(format!(
            "{} is in the future",
            request.date
        )));
    }
    let channels = match request.channel {
        Some(channel) if !has_statement(channel) => {
            return Err(GatewayError::InvalidRequest(format!(
                "{channel}'s statement is not reconciled"
            )));
        }
        Some(channel) => vec![channel],
        None => {
            let mut all: Vec<_> = state
                .channels
                .enabled()
                .filter(|c| has_statement(*c))
                .collect();
            all.sort_by_key(|c| c.as_str());
            all
        }
    };
    let mut runs = Vec::new();
    for channel in channels {
        if let Some(run) = reconcile_day(&state, channel, request.date, true).await? {
            runs.push(run);
        }
    }
    Ok(web::Json(ReconciliationReport { runs }))
}
