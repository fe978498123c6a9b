//! `/sandbox/admin/faults`: set, show and clear injected faults.

use actix_web::{HttpResponse, web};
use paywire_domain::PayChannel;
use serde::Deserialize;

use crate::SandboxError;
use crate::faults::{Faults, PutFaults, Scope};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/sandbox/admin/faults", web::get().to(show))
        .route("/sandbox/admin/faults", web::put().to(set))
        .route("/sandbox/admin/faults", web::delete().to(clear));
}

/// `GET`: the global spec, per-trade specs and every fault injected so far.
pub async fn show(faults: web::Data<Faults>) -> HttpResponse {
    HttpResponse::Ok().json(faults.view())
}

/// `PUT {"scope":"global"|{"channel"?,"out_trade_no"}, "notify":{…}, "pay_without_notify",
/// "api":{…}, "probability"}`: replaces the spec of that scope.
#[tracing::instrument(skip_all)]
pub async fn set(
    faults: web::Data<Faults>,
    body: web::Bytes,
) -> Result<HttpResponse, SandboxError> {
    // Parsed here so a typo in a fault name is a 400 with our error body.
    let put: PutFaults =
        serde_json::from_slice(&body).map_err(|e| SandboxError::InvalidFaultSpec(e.to_string()))?;
    let (scope, spec) = put.into_parts();
    faults.set(&scope, spec)?;
    tracing::info!(?scope, "fault spec set");
    Ok(HttpResponse::Ok().json(faults.view()))
}

#[derive(Debug, Deserialize)]
pub struct ClearQuery {
    /// `global`, or absent with `out_trade_no`; all absent clears everything.
    pub scope: Option<String>,
    pub channel: Option<PayChannel>,
    pub out_trade_no: Option<String>,
}

/// `DELETE [?scope=global | ?out_trade_no=…[&channel=…]]`.
#[tracing::instrument(skip_all)]
pub async fn clear(
    faults: web::Data<Faults>,
    query: web::Query<ClearQuery>,
) -> Result<HttpResponse, SandboxError> {
    let q = query.into_inner();
    let scope = match (q.scope, q.out_trade_no) {
        (Some(name), None) => Some(Scope::Named(name)),
        (None, Some(out_trade_no)) => Some(Scope::Trade {
            channel: q.channel,
            out_trade_no,
        }),
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(SandboxError::InvalidFaultSpec(
                "give scope or out_trade_no, not both".into(),
            ));
        }
    };
    faults.clear(scope.as_ref())?;
    Ok(HttpResponse::Ok().json(faults.view()))
}
