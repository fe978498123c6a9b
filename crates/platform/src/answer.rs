//! Answers a handler returns instead of building responses by hand.

use actix_web::body::BoxBody;
use actix_web::{HttpRequest, HttpResponse, Responder};
use serde::Serialize;

/// What an idempotent create did, answered as JSON: `201 Created` when this request made
/// the resource, `200 OK` with the one an earlier request (same key, same record) made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored<T> {
    Created(T),
    Existing(T),
}

impl<T> Stored<T> {
    /// `Created` when `created`, else `Existing`.
    pub fn new(created: bool, value: T) -> Self {
        if created {
            Stored::Created(value)
        } else {
            Stored::Existing(value)
        }
    }

    pub fn get(&self) -> &T {
        match self {
            Stored::Created(v) | Stored::Existing(v) => v,
        }
    }

    pub fn is_created(&self) -> bool {
        matches!(self, Stored::Created(_))
    }

    /// The same outcome for another view of the value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Stored<U> {
        match self {
            Stored::Created(v) => Stored::Created(f(v)),
            Stored::Existing(v) => Stored::Existing(f(v)),
        }
    }
}

impl<T: Serialize> Responder for Stored<T> {
    type Body = BoxBody;

    fn respond_to(self, _req: &HttpRequest) -> HttpResponse {
        match self {
            Stored::Created(v) => HttpResponse::Created().json(v),
            Stored::Existing(v) => HttpResponse::Ok().json(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn created_is_201_and_existing_200_with_the_same_body() {
        let req = actix_web::test::TestRequest::default().to_http_request();
        for (stored, status) in [(Stored::new(true, 7), 201), (Stored::new(false, 7), 200)] {
            assert_eq!(stored.is_created(), status == 201);
            let resp = stored
                .map(|n| serde_json::json!({ "n": n }))
                .respond_to(&req);
            assert_eq!(resp.status().as_u16(), status);
            let body = actix_web::body::to_bytes(resp.into_body()).await.unwrap();
            assert_eq!(&body[..], br#"{"n":7}"#);
        }
    }
}
