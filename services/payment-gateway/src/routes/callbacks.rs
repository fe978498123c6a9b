//! `POST /api/callback/{channel}`: one route for every channel in the registry.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use paywire_domain::PayChannel;

use crate::AppState;
use crate::callbacks::handle_notification;
use crate::error::GatewayError;

pub async fn notification(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, GatewayError> {
    let name = path.into_inner();
    let channel = name
        .parse::<PayChannel>()
        .ok()
        .and_then(|c| state.channels.get(c))
        .ok_or_else(|| GatewayError::UnknownChannel(name.clone()))?
        .clone();
    // actix stores header names lower-cased; values that are not visible ASCII cannot be
    // part of a valid signature and are dropped.
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let reply = handle_notification(&state, &channel, &headers, &body).await;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.insert_header((actix_web::http::header::RETRY_AFTER, "1"));
    }
    if reply.body.is_empty() {
        return Ok(response.finish());
    }
    Ok(response.content_type(reply.content_type).body(reply.body))
}
