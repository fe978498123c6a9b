//! A student's side: choosing courses, learning status and their course list.

use actix_web::web;
use chrono::{DateTime, Utc};
use paywire_contracts::ErrorBody;
use paywire_contracts::openapi::answers::{AuthErrors, RequestErrors};
use paywire_domain::{
    ChooseCourseId, ChooseCourseStatus, CourseCharge, CourseId, Fen, LearnStatus, UserId,
};
use paywire_platform::auth::AuthenticatedUser;
use serde::{Deserialize, Serialize};
use tracing::field::{Empty, display};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::LearningError;
use crate::store::{self, ChooseCourse, Course, Enrolment};

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChooseBody {
    pub course_id: CourseId,
}

/// A student's choice of a course.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChooseView {
    pub choose_course_id: ChooseCourseId,
    pub course_id: CourseId,
    pub status: ChooseCourseStatus,
    pub learn_status: LearnStatus,
    pub price_fen: Fen,
}

impl ChooseView {
    fn new(choice: &ChooseCourse, learn_status: LearnStatus) -> Self {
        tracing::Span::current().record("choose_course_id", display(choice.id));
        ChooseView {
            choose_course_id: choice.id,
            course_id: choice.course_id,
            status: choice.status,
            learn_status,
            price_fen: choice.price,
        }
    }
}

/// How often a choice is re-evaluated after losing a race to a concurrent request for the
/// same student and course. Each loss means the other request committed, so the next
/// round sees its result; more than a couple of rounds would mean a bug.
const ROUNDS: usize = 3;

/// Choose a course
///
/// A free course is enrolled at once (`chosen`, `can_learn`). A paid course gets a choice
/// awaiting payment; its `choose_course_id` is the `biz_id` of the order that pays for it.
/// Idempotent per student and course: a course the student can already learn, or a pending
/// choice, is answered again rather than duplicated. After a full refund (`learn_status`
/// `refunded`) a paid course gets a new choice awaiting payment, bought with a new order.
#[utoipa::path(
    post,
    path = "/api/learning/choose-course",
    operation_id = "chooseCourse",
    tag = "public",
    request_body = ChooseBody,
    responses(
        (status = 200, description = "the student's choice of this course", body = ChooseView),
        (status = 404, description = "`course_not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: concurrent requests kept changing the choice; retry", body = ErrorBody),
        RequestErrors,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0, course_id = %body.course_id, choose_course_id = Empty))]
pub async fn choose(
    user: AuthenticatedUser,
    state: web::Data<AppState>,
    body: web::Json<ChooseBody>,
) -> Result<web::Json<ChooseView>, LearningError> {
    let student = &user.0;
    let view = state
        .repeat(async |conn| {
            let course = store::find_course(conn, body.course_id)
                .await?
                .ok_or(LearningError::CourseNotFound(body.course_id))?;
            for _ in 0..ROUNDS {
                if let Some(view) = choose_once(&state, conn, student, &course).await? {
                    return Ok(view);
                }
            }
            Err(LearningError::Contention(format!(
                "choosing course {} for {student}",
                course.id
            )))
        })
        .await?;
    Ok(web::Json(view))
}

/// One round of [`choose`]; `None` when a concurrent request changed the picture.
async fn choose_once(
    state: &AppState,
    conn: &mut diesel_async::AsyncPgConnection,
    student: &UserId,
    course: &Course,
) -> Result<Option<ChooseView>, LearningError> {
    let now = Utc::now();
    let enrolment = store::find_enrolment(conn, student, course.id).await?;
    let learn = LearnStatus::derive(enrolment.as_ref().map(|e| (e.valid_until, e.status)), now);
    if let (LearnStatus::CanLearn, Some(enrolment)) = (learn, &enrolment) {
        let choice = store::find_choice(conn, enrolment.choose_course_id)
            .await?
            .ok_or_else(|| {
                LearningError::CorruptRow(format!(
                    "course_tables.id={} names a missing choice",
                    enrolment.id
                ))
            })?;
        return Ok(Some(ChooseView::new(&choice, learn)));
    }
    match course.charge {
        CourseCharge::Free => {
            let id = state.ids.next();
            Ok(store::enrol_free(conn, id, student, course, now)
                .await?
                .map(|(choice, enrolment)| {
                    tracing::info!(valid_until = %enrolment.valid_until, "enrolled in free course");
                    ChooseView::new(&choice, LearnStatus::CanLearn)
                }))
        }
        CourseCharge::Paid => {
            if let Some(pending) = store::find_pending(conn, student, course.id).await? {
                return Ok(Some(ChooseView::new(&pending, learn)));
            }
            let created = store::insert_pending(conn, state.ids.next(), student, course).await?;
            if let Some(pending) = &created {
                tracing::info!(
                    price_fen = pending.price.get(),
                    "paid course awaiting payment"
                );
            }
            Ok(created.map(|pending| ChooseView::new(&pending, learn)))
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LearnStatusView {
    pub course_id: CourseId,
    pub learn_status: LearnStatus,
}

/// Whether the caller may learn a course now
///
/// Derived from the enrolment: `refunded` once a full refund revoked it (the student may
/// choose and buy the course again), else from its validity period.
#[utoipa::path(
    get,
    path = "/api/learning/learn-status/{course_id}",
    operation_id = "learnStatus",
    tag = "public",
    params(("course_id" = CourseId, Path)),
    responses(
        (status = 200, description = "the caller's learn status", body = LearnStatusView),
        (status = 404, description = "`course_not_found`", body = ErrorBody),
        RequestErrors,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0, course_id = %path))]
pub async fn learn_status(
    user: AuthenticatedUser,
    state: web::Data<AppState>,
    path: web::Path<CourseId>,
) -> Result<web::Json<LearnStatusView>, LearningError> {
    let course_id = path.into_inner();
    let enrolment = state
        .repeat(async |conn| {
            if store::find_course(conn, course_id).await?.is_none() {
                return Err(LearningError::CourseNotFound(course_id));
            }
            store::find_enrolment(conn, &user.0, course_id).await
        })
        .await?;
    Ok(web::Json(LearnStatusView {
        course_id,
        learn_status: LearnStatus::derive(enrolment.map(|e| (e.valid_until, e.status)), Utc::now()),
    }))
}

/// An enrolment: a course the student chose (and paid for), with its validity period.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Enrolment)]
pub struct MyCourseView {
    pub course_id: CourseId,
    pub course_name: String,
    pub choose_course_id: ChooseCourseId,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    /// `refunded` when a full refund revoked it.
    pub learn_status: LearnStatus,
    /// When a full refund revoked it; `null` while it is not revoked.
    pub refunded_at: Option<DateTime<Utc>>,
}

impl MyCourseView {
    fn new(e: Enrolment, now: DateTime<Utc>) -> Self {
        MyCourseView {
            learn_status: e.learn_status(now),
            refunded_at: e.revoked_at,
            course_id: e.course_id,
            course_name: e.course_name,
            choose_course_id: e.choose_course_id,
            valid_from: e.valid_from,
            valid_until: e.valid_until,
        }
    }
}

/// A paid course chosen but not paid yet.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PendingChoice)]
pub struct PendingView {
    pub choose_course_id: ChooseCourseId,
    pub course_id: CourseId,
    pub course_name: String,
    pub price_fen: Fen,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MyCoursesView {
    pub courses: Vec<MyCourseView>,
    pub awaiting_payment: Vec<PendingView>,
}

/// The caller's enrolments and choices awaiting payment
#[utoipa::path(
    get,
    path = "/api/learning/my-courses",
    operation_id = "myCourses",
    tag = "public",
    responses(
        (status = 200, description = "enrolments (with validity) and unpaid choices", body = MyCoursesView),
        AuthErrors,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn my_courses(
    user: AuthenticatedUser,
    state: web::Data<AppState>,
) -> Result<web::Json<MyCoursesView>, LearningError> {
    let (enrolments, pending) = state
        .repeat(async |conn| {
            let enrolments = store::enrolments_of(conn, &user.0).await?;
            Ok((enrolments, store::pending_of(conn, &user.0).await?))
        })
        .await?;
    let now = Utc::now();
    Ok(web::Json(MyCoursesView {
        courses: enrolments
            .into_iter()
            .map(|e| MyCourseView::new(e, now))
            .collect(),
        awaiting_payment: pending
            .into_iter()
            .map(|p| PendingView {
                choose_course_id: p.id,
                course_id: p.course_id,
                course_name: p.course_name,
                price_fen: p.price,
            })
            .collect(),
    }))
}
