//! The operators' commands against a running platform's internal listeners, with the
//! operators' own credential (`auth.callers.operator` of the services they call):
//!
//! * `refund <order_id> [--amount-fen N] [--reason …] [--request-id …]`: the order
//!   service's `POST /internal/orders/{order_id}/refund`.
//!
//! `PAYWIRE_OPERATOR_TOKEN` is the credential (default: the development one);
//! `PAYWIRE_ORDER_INTERNAL_URL` the order service's internal listener (default: the
//! local platform's).

use anyhow::{Context, bail};
use paywire_contracts::order::{RefundOrder, RefundTicket};
use paywire_domain::{Fen, OrderId};
use paywire_platform::auth::SERVICE_TOKEN_HEADER;
use paywire_platform::config::DEV_OPERATOR_TOKEN;
use serde::de::DeserializeOwned;

use crate::layout;

/// Where and as whom the operators' commands call.
#[derive(Debug, Clone)]
pub struct Operator {
    pub order_internal: String,
    pub token: String,
}

impl Operator {
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            order_internal: var("PAYWIRE_ORDER_INTERNAL_URL")
                .unwrap_or_else(|| layout::service("order").internal_url()),
            token: var("PAYWIRE_OPERATOR_TOKEN").unwrap_or_else(|| DEV_OPERATOR_TOKEN.to_owned()),
        }
    }

    /// Asks the order service to refund `order_id` (all of it without `amount`).
    pub async fn refund(
        &self,
        order_id: OrderId,
        amount: Option<Fen>,
        reason: Option<String>,
        request_id: Option<String>,
    ) -> anyhow::Result<(bool, RefundTicket)> {
        let url = format!("{}/internal/orders/{order_id}/refund", self.order_internal);
        let body = RefundOrder {
            amount_fen: amount,
            reason,
            request_id,
        };
        let resp = reqwest::Client::new()
            .post(&url)
            .header(SERVICE_TOKEN_HEADER, &self.token)
            .json(&body)
            .send()
            .await;
        let (status, ticket) = answer::<RefundTicket>(&url, resp).await?;
        Ok((status == reqwest::StatusCode::CREATED, ticket))
    }
}

/// The body of a 2xx answer, or an error quoting the answer.
pub async fn answer<T: DeserializeOwned>(
    url: &str,
    sent: reqwest::Result<reqwest::Response>,
) -> anyhow::Result<(reqwest::StatusCode, T)> {
    let resp =
        sent.with_context(|| format!("calling {url} (is the platform running? `cargo xtask up`)"))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .with_context(|| format!("reading {url}"))?;
    if !status.is_success() {
        bail!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    let body = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "unexpected body from {url}: {}",
            String::from_utf8_lossy(&bytes)
        )
    })?;
    Ok((status, body))
}

/// `cargo xtask refund`.
pub async fn run_refund(
    order_id: OrderId,
    amount: Option<Fen>,
    reason: Option<String>,
    request_id: Option<String>,
) -> anyhow::Result<()> {
    let (created, t) = Operator::from_env()
        .refund(order_id, amount, reason, request_id)
        .await?;
    println!(
        "{} refund {} of order {} (attempt {}): {} fen, {}",
        if created {
            "requested"
        } else {
            "already requested:"
        },
        t.refund_no,
        t.order_id,
        t.pay_no,
        t.amount_fen.get(),
        t.status
    );
    println!(
        "the gateway's refund worker drives it to a final state; a full refund then revokes the course"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    use serde_json::{Value, json};

    use super::*;

    type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

    /// A stand-in order service recording what it was sent.
    fn fake(seen: Seen) -> String {
        let server = HttpServer::new(move || {
            let seen = seen.clone();
            App::new().route(
                "/internal/orders/{id}/refund",
                web::post().to(move |req: HttpRequest, body: web::Bytes| {
                    let seen = seen.clone();
                    async move {
                        let token = req
                            .headers()
                            .get(SERVICE_TOKEN_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let body: Value = serde_json::from_slice(&body).unwrap();
                        seen.lock().unwrap().push((
                            req.match_info()["id"].to_owned(),
                            token.clone(),
                            body.clone(),
                        ));
                        if token != "ops" {
                            return HttpResponse::Forbidden()
                                .json(json!({"error": "caller_not_admitted", "message": "no"}));
                        }
                        HttpResponse::Created().json(json!({
                            "refund_no": "5", "pay_no": "7", "order_id": "8",
                            "amount_fen": body.get("amount_fen").cloned().unwrap_or(json!(19900)),
                            "status": "pending"
                        }))
                    }
                }),
            )
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        format!("http://127.0.0.1:{port}")
    }

    #[tokio::test]
    async fn refunds_through_the_order_service_with_the_operator_credential() {
        let seen: Seen = Arc::default();
        let base = fake(seen.clone());
        let ops = Operator {
            order_internal: base.clone(),
            token: "ops".into(),
        };
        let (created, ticket) = ops
            .refund(OrderId::from(8), None, None, None)
            .await
            .unwrap();
        assert!(created);
        assert_eq!(ticket.amount_fen.get(), 19900);
        let (_, part) = ops
            .refund(
                OrderId::from(8),
                Some(Fen::new(100).unwrap()),
                Some("goodwill".into()),
                None,
            )
            .await
            .unwrap();
        assert_eq!(part.amount_fen.get(), 100);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                ("8".into(), "ops".into(), json!({})),
                (
                    "8".into(),
                    "ops".into(),
                    json!({"amount_fen": 100, "reason": "goodwill"})
                ),
            ]
        );

        let wrong = Operator {
            order_internal: base,
            token: "order".into(),
        };
        let err = wrong
            .refund(OrderId::from(8), None, None, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("403") && err.contains("caller_not_admitted"),
            "{err}"
        );
    }
}
