//! Both directions of WeChat Pay's signatures at the HTTP edge: the merchant's
//! `Authorization` on requests ([`MerchantRequest`]) and the `Wechatpay-*` headers on
//! every response ([`sign_responses`]).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use chrono::Utc;
use futures::future::LocalBoxFuture;

use super::WechatSandbox;
use super::routes::SpoilSignature;
use crate::SandboxError;

/// A merchant request whose `Authorization` verified over the exact method, path with
/// query, and raw body bytes.
#[derive(Debug)]
pub struct MerchantRequest {
    pub mchid: String,
    pub body: Bytes,
}

fn sandbox(req: &HttpRequest) -> Result<web::Data<WechatSandbox>, SandboxError> {
    req.app_data::<web::Data<WechatSandbox>>()
        .cloned()
        .ok_or_else(|| SandboxError::WechatSystem("WeChat sandbox not configured".into()))
}

impl FromRequest for MerchantRequest {
    type Error = SandboxError;
    type Future = LocalBoxFuture<'static, Result<Self, SandboxError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = Bytes::from_request(&req, payload);
        Box::pin(async move {
            let body = body
                .await
                .map_err(|e| SandboxError::ParamError(format!("请求体无法读取: {e}")))?;
            let sandbox = sandbox(&req)?;
            // The request target exactly as sent, percent-encoding included.
            let canonical_url = req
                .uri()
                .path_and_query()
                .map(|pq| pq.as_str())
                .unwrap_or_else(|| req.uri().path());
            let authorization = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let mchid = sandbox.verify_request(
                req.method().as_str(),
                canonical_url,
                authorization,
                &body,
                Utc::now(),
            )?;
            Ok(MerchantRequest { mchid, body })
        })
    }
}

/// Middleware: signs every response of the WeChat API (errors and 204 included) over the
/// exact body bytes that will be sent.
pub async fn sign_responses(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // Not a clone of the request: routing needs it unshared.
    let sandbox = sandbox(req.request())?;
    // Handler and extractor errors arrive here as ordinary (error) responses, so they
    // are signed too; only a failure inside actix itself would bypass this.
    let response = next.call(req).await?.map_into_boxed_body();
    let (req, response) = response.into_parts();
    let spoil = req.extensions().contains::<SpoilSignature>();
    let (head, body) = response.into_parts();
    let system = |m: String| actix_web::Error::from(SandboxError::WechatSystem(m));
    let body = actix_web::body::to_bytes(body)
        .await
        .map_err(|_| system("response body could not be buffered".into()))?;
    let mut response = head.set_body(body.clone());
    // WeChat Pay spells its headers `Wechatpay-Signature`, not `wechatpay-signature`.
    response.head_mut().set_camel_case_headers(true);
    let headers = if spoil {
        sandbox.signer().bad_headers(&body)
    } else {
        sandbox.signer().headers(&body)
    };
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| system(e.to_string()))?;
        let value = HeaderValue::from_str(&value).map_err(|e| system(e.to_string()))?;
        response.headers_mut().insert(name, value);
    }
    Ok(ServiceResponse::new(req, response.map_into_boxed_body()))
}
