//! The learning center's internal API: the choose-course record an order pays for.

pub use paywire_contracts::learning_center::ChooseCourseRecord;
use paywire_domain::ChooseCourseId;
use reqwest::StatusCode;

use super::{Upstream, bad_response, send, unexpected};
use crate::error::OrderError;

const SERVICE: &str = "learning-center";

#[derive(Debug, Clone)]
pub struct LearningCenterClient(Upstream);

impl LearningCenterClient {
    pub fn new(upstream: Upstream) -> Self {
        Self(upstream)
    }

    /// The record, or `None` when the learning center does not know it.
    #[tracing::instrument(skip_all, fields(choose_course_id = %id))]
    pub async fn choose_course(
        &self,
        id: ChooseCourseId,
    ) -> Result<Option<ChooseCourseRecord>, OrderError> {
        let url = format!("{}/internal/choose-courses/{id}", self.0.base_url);
        let resp = send(SERVICE, || self.0.http.get(&url)).await?;
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
