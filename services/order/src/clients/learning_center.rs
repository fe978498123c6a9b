//! The learning center's internal API: the choose-course record an order pays for.

use std::time::Duration;

use paywire_domain::{ChooseCourseId, ChooseCourseStatus, CourseId, Fen, UserId};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde::Deserialize;

use super::{bad_response, http_client, unavailable, unexpected};
use crate::error::OrderError;

const SERVICE: &str = "learning-center";

/// `GET /internal/choose-courses/{id}`; the price here is the only price an order uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChooseCourseRecord {
    pub choose_course_id: ChooseCourseId,
    pub user_id: UserId,
    pub course_id: CourseId,
    pub course_name: String,
    pub price_fen: Fen,
    pub status: ChooseCourseStatus,
}

#[derive(Debug, Clone)]
pub struct LearningCenterClient {
    http: reqwest::Client,
    base_url: String,
}

impl LearningCenterClient {
    pub fn new(
        base_url: &str,
        service_token: &SecretString,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            http: http_client(service_token, timeout)?,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The record, or `None` when the learning center does not know it.
    #[tracing::instrument(skip_all, fields(choose_course_id = %id))]
    pub async fn choose_course(
        &self,
        id: ChooseCourseId,
    ) -> Result<Option<ChooseCourseRecord>, OrderError> {
        let url = format!("{}/internal/choose-courses/{id}", self.base_url);
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| unavailable(SERVICE, e))?;
        match resp.status() {
            StatusCode::OK => {
                let record: ChooseCourseRecord =
                    resp.json().await.map_err(|e| bad_response(SERVICE, e))?;
                if record.choose_course_id != id {
                    return Err(OrderError::BadUpstreamResponse {
                        service: SERVICE,
                        reason: format!("asked for {id}, got {}", record.choose_course_id),
                    });
                }
                Ok(Some(record))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(unexpected(SERVICE, resp).await),
        }
    }
}
