//! The learning center's tables. Rows are parsed into domain types on the way out, so a
//! corrupt row is an error here rather than a surprise in a handler.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use paywire_domain::{
    ChooseCourseId, ChooseCourseStatus, CourseCharge, CourseId, EnrolmentStatus, Fen, ParseError,
    PayNo, RefundNo, UserId,
};

use crate::error::LearningError;
use crate::schema::{choose_courses, course_refunds, course_tables, courses};
use paywire_platform::db::{first_parsed, load_parsed};

/// A course in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Course {
    pub id: CourseId,
    pub name: String,
    pub charge: CourseCharge,
    pub price: Fen,
    pub valid_days: u32,
}

/// A student's choice of a course, with the catalogue terms copied at choice time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChooseCourse {
    pub id: ChooseCourseId,
    pub user_id: UserId,
    pub course_id: CourseId,
    pub course_name: String,
    pub charge: CourseCharge,
    pub price: Fen,
    pub valid_days: u32,
    pub status: ChooseCourseStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The attempt whose pay result enrolled it (paid choices, once chosen).
    pub pay_no: Option<PayNo>,
}

/// A row of a student's course table: what they may learn, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    pub id: i64,
    pub choose_course_id: ChooseCourseId,
    pub user_id: UserId,
    pub course_id: CourseId,
    pub course_name: String,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub status: EnrolmentStatus,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Enrolment {
    /// What the student may do with it now.
    pub fn learn_status(&self, now: DateTime<Utc>) -> paywire_domain::LearnStatus {
        paywire_domain::LearnStatus::derive(Some((self.valid_until, self.status)), now)
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = courses, check_for_backend(diesel::pg::Pg))]
struct CourseRow {
    id: i64,
    name: String,
    charge: String,
    price_fen: i64,
    valid_days: i32,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = choose_courses, check_for_backend(diesel::pg::Pg))]
struct ChooseRow {
    id: i64,
    user_id: String,
    course_id: i64,
    course_name: String,
    charge: String,
    price_fen: i64,
    valid_days: i32,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    pay_no: Option<i64>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = course_tables, check_for_backend(diesel::pg::Pg))]
struct EnrolmentRow {
    id: i64,
    choose_course_id: i64,
    user_id: String,
    course_id: i64,
    course_name: String,
    valid_from: DateTime<Utc>,
    valid_until: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    status: String,
    revoked_at: Option<DateTime<Utc>>,
}

fn valid_days(v: i32) -> Result<u32, ParseError> {
    u32::try_from(v)
        .ok()
        .filter(|d| *d > 0)
        .ok_or_else(|| ParseError::new("valid days", format!("{v} is not positive")))
}

fn corrupt(table: &'static str, id: i64) -> impl Fn(ParseError) -> LearningError {
    move |e| LearningError::CorruptRow(format!("{table}.id={id}: {e}"))
}

impl TryFrom<CourseRow> for Course {
    type Error = LearningError;
    fn try_from(r: CourseRow) -> Result<Self, LearningError> {
        let bad = corrupt("courses", r.id);
        Ok(Course {
            id: CourseId::from(r.id),
            charge: r.charge.parse().map_err(&bad)?,
            price: Fen::new(r.price_fen).map_err(&bad)?,
            valid_days: valid_days(r.valid_days).map_err(&bad)?,
            name: r.name,
        })
    }
}

impl TryFrom<ChooseRow> for ChooseCourse {
    type Error = LearningError;
    fn try_from(r: ChooseRow) -> Result<Self, LearningError> {
        let bad = corrupt("choose_courses", r.id);
        Ok(ChooseCourse {
            id: ChooseCourseId::from(r.id),
            user_id: UserId::parse(&r.user_id).map_err(&bad)?,
            course_id: CourseId::from(r.course_id),
            charge: r.charge.parse().map_err(&bad)?,
            price: Fen::new(r.price_fen).map_err(&bad)?,
            valid_days: valid_days(r.valid_days).map_err(&bad)?,
            status: r.status.parse().map_err(&bad)?,
            course_name: r.course_name,
            created_at: r.created_at,
            updated_at: r.updated_at,
            pay_no: r.pay_no.map(PayNo::from),
        })
    }
}

impl TryFrom<EnrolmentRow> for Enrolment {
    type Error = LearningError;
    fn try_from(r: EnrolmentRow) -> Result<Self, LearningError> {
        let bad = corrupt("course_tables", r.id);
        Ok(Enrolment {
            id: r.id,
            choose_course_id: ChooseCourseId::from(r.choose_course_id),
            user_id: UserId::parse(&r.user_id).map_err(&bad)?,
            status: r.status.parse().map_err(&bad)?,
            revoked_at: r.revoked_at,
            course_id: CourseId::from(r.course_id),
            course_name: r.course_name,
            valid_from: r.valid_from,
            valid_until: r.valid_until,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// The whole catalogue, by id.
pub async fn list_courses(conn: &mut AsyncPgConnection) -> Result<Vec<Course>, LearningError> {
    let query = courses::table
        .select(CourseRow::as_select())
        .order(courses::id);
    load_parsed(conn, query).await
}

pub async fn find_course(
    conn: &mut AsyncPgConnection,
    id: CourseId,
) -> Result<Option<Course>, LearningError> {
    first_parsed(
        conn,
        courses::table.find(id.get()).select(CourseRow::as_select()),
    )
    .await
}

pub async fn find_choice(
    conn: &mut AsyncPgConnection,
    id: ChooseCourseId,
) -> Result<Option<ChooseCourse>, LearningError> {
    first_parsed(
        conn,
        choose_courses::table
            .find(id.get())
            .select(ChooseRow::as_select()),
    )
    .await
}

/// The student's pending (awaiting payment) choice of a course; at most one exists.
pub async fn find_pending(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    course: CourseId,
) -> Result<Option<ChooseCourse>, LearningError> {
    first_parsed(
        conn,
        choose_courses::table
            .filter(choose_courses::user_id.eq(user.as_str()))
            .filter(choose_courses::course_id.eq(course.get()))
            .filter(choose_courses::status.eq(ChooseCourseStatus::AwaitingPayment.as_str()))
            .select(ChooseRow::as_select()),
    )
    .await
}

/// Every pending choice of the student, newest first.
pub async fn pending_of(
    conn: &mut AsyncPgConnection,
    user: &UserId,
) -> Result<Vec<ChooseCourse>, LearningError> {
    let query = choose_courses::table
        .filter(choose_courses::user_id.eq(user.as_str()))
        .filter(choose_courses::status.eq(ChooseCourseStatus::AwaitingPayment.as_str()))
        .select(ChooseRow::as_select())
        .order(choose_courses::id.desc());
    load_parsed(conn, query).await
}

pub async fn find_enrolment(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    course: CourseId,
) -> Result<Option<Enrolment>, LearningError> {
    first_parsed(
        conn,
        course_tables::table
            .filter(course_tables::user_id.eq(user.as_str()))
            .filter(course_tables::course_id.eq(course.get()))
            .select(EnrolmentRow::as_select()),
    )
    .await
}

/// The student's course table, by course.
pub async fn enrolments_of(
    conn: &mut AsyncPgConnection,
    user: &UserId,
) -> Result<Vec<Enrolment>, LearningError> {
    let query = course_tables::table
        .filter(course_tables::user_id.eq(user.as_str()))
        .select(EnrolmentRow::as_select())
        .order(course_tables::course_id);
    load_parsed(conn, query).await
}

#[derive(Debug, Insertable)]
#[diesel(table_name = choose_courses)]
struct NewChooseRow<'a> {
    id: i64,
    user_id: &'a str,
    course_id: i64,
    course_name: &'a str,
    charge: &'a str,
    price_fen: i64,
    valid_days: i32,
    status: &'a str,
}

impl<'a> NewChooseRow<'a> {
    fn new(
        id: ChooseCourseId,
        user: &'a UserId,
        course: &'a Course,
        status: ChooseCourseStatus,
    ) -> Self {
        Self {
            id: id.get(),
            user_id: user.as_str(),
            course_id: course.id.get(),
            course_name: &course.name,
            charge: course.charge.as_str(),
            price_fen: course.price.get(),
            // Parsed from an INT column, so it fits.
            valid_days: i32::try_from(course.valid_days).unwrap_or(i32::MAX),
            status: status.as_str(),
        }
    }
}

/// Records a pending choice of a paid course. Returns `None` when the student already has
/// one (a concurrent request won at the partial unique index): the caller reads that one.
pub async fn insert_pending(
    conn: &mut AsyncPgConnection,
    id: ChooseCourseId,
    user: &UserId,
    course: &Course,
) -> Result<Option<ChooseCourse>, LearningError> {
    diesel::insert_into(choose_courses::table)
        .values(NewChooseRow::new(
            id,
            user,
            course,
            ChooseCourseStatus::AwaitingPayment,
        ))
        .on_conflict_do_nothing()
        .returning(ChooseRow::as_returning())
        .get_result(conn)
        .await
        .optional()?
        .map(ChooseCourse::try_from)
        .transpose()
}

/// When an upsert of an existing enrolment may replace it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renew {
    /// Only an expired enrolment is renewed (choosing a free course again).
    IfExpired,
    /// The enrolment is renewed whatever its state (a payment buys a new period).
    Always,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = course_tables)]
struct NewEnrolmentRow<'a> {
    choose_course_id: i64,
    user_id: &'a str,
    course_id: i64,
    course_name: &'a str,
    valid_from: DateTime<Utc>,
    valid_until: DateTime<Utc>,
}

/// Enrols the student of `choice` from `now` for the choice's validity: inserts the course
/// table row, or renews the existing one as `renew` allows. Returns `None` when an existing
/// row was left alone.
pub async fn upsert_enrolment(
    conn: &mut AsyncPgConnection,
    choice: &ChooseCourse,
    now: DateTime<Utc>,
    renew: Renew,
) -> Result<Option<Enrolment>, LearningError> {
    let row = NewEnrolmentRow {
        choose_course_id: choice.id.get(),
        user_id: choice.user_id.as_str(),
        course_id: choice.course_id.get(),
        course_name: &choice.course_name,
        valid_from: now,
        valid_until: now + Duration::days(i64::from(choice.valid_days)),
    };
    let upsert = diesel::insert_into(course_tables::table)
        .values(&row)
        .on_conflict((course_tables::user_id, course_tables::course_id))
        .do_update()
        .set((
            course_tables::choose_course_id.eq(excluded(course_tables::choose_course_id)),
            course_tables::course_name.eq(excluded(course_tables::course_name)),
            course_tables::valid_from.eq(excluded(course_tables::valid_from)),
            course_tables::valid_until.eq(excluded(course_tables::valid_until)),
            course_tables::updated_at.eq(now),
            // A renewal after a refund gives access back (`revoked → active`); an active
            // row stays active.
            course_tables::status.eq(EnrolmentStatus::Active.as_str()),
            course_tables::revoked_at.eq(None::<DateTime<Utc>>),
        ));
    let found = match renew {
        Renew::Always => Some(
            upsert
                .returning(EnrolmentRow::as_returning())
                .get_result(conn)
                .await?,
        ),
        // The guard is evaluated on the row as committed by any concurrent enrolment, so
        // two simultaneous free choices renew it once.
        // `ON CONFLICT … DO UPDATE … WHERE` is only reachable through `FilterDsl` itself.
        Renew::IfExpired => diesel::query_dsl::methods::FilterDsl::filter(
            upsert,
            course_tables::valid_until.le(now),
        )
        .returning(EnrolmentRow::as_returning())
        .get_result(conn)
        .await
        .optional()?,
    };
    found.map(Enrolment::try_from).transpose()
}

/// Chooses a free course: a `chosen` record and its enrolment, in one transaction.
/// Returns `None` (and records nothing) when the student already has a valid enrolment,
/// e.g. because a concurrent request enrolled them first.
pub async fn enrol_free(
    conn: &mut AsyncPgConnection,
    id: ChooseCourseId,
    user: &UserId,
    course: &Course,
    now: DateTime<Utc>,
) -> Result<Option<(ChooseCourse, Enrolment)>, LearningError> {
    conn.transaction::<_, LearningError, _>(async |conn| {
        let choice: ChooseCourse = diesel::insert_into(choose_courses::table)
            .values(NewChooseRow::new(
                id,
                user,
                course,
                ChooseCourseStatus::Chosen,
            ))
            .returning(ChooseRow::as_returning())
            .get_result(conn)
            .await?
            .try_into()?;
        match upsert_enrolment(conn, &choice, now, Renew::IfExpired).await? {
            Some(enrolment) => Ok(Some((choice, enrolment))),
            None => {
                // Nothing to enrol: the choice would be an orphan, so it goes too.
                diesel::delete(choose_courses::table.find(id.get()))
                    .execute(conn)
                    .await?;
                Ok(None)
            }
        }
    })
    .await
}

/// Guarded `awaiting_payment → chosen`, remembering the attempt that paid. Returns whether
/// this call moved it.
pub async fn set_chosen(
    conn: &mut AsyncPgConnection,
    id: ChooseCourseId,
    pay_no: PayNo,
) -> Result<bool, LearningError> {
    let rows = diesel::update(
        choose_courses::table
            .filter(choose_courses::id.eq(id.get()))
            .filter(choose_courses::status.eq_any(ChooseCourseStatus::Chosen.source_names())),
    )
    .set((
        choose_courses::status.eq(ChooseCourseStatus::Chosen.as_str()),
        choose_courses::pay_no.eq(pay_no.get()),
        choose_courses::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    Ok(rows == 1)
}

/// The choice a payment enrolled, if any.
pub async fn find_choice_by_pay_no(
    conn: &mut AsyncPgConnection,
    pay_no: PayNo,
) -> Result<Option<ChooseCourse>, LearningError> {
    first_parsed(
        conn,
        choose_courses::table
            .filter(choose_courses::pay_no.eq(pay_no.get()))
            .select(ChooseRow::as_select()),
    )
    .await
}

/// Records a succeeded refund against its choice. Returns `false` when this refund was
/// recorded before (a redelivery, or the same result under another message id).
pub async fn record_refund(
    conn: &mut AsyncPgConnection,
    refund_no: RefundNo,
    choice: &ChooseCourse,
    pay_no: PayNo,
    amount: Fen,
    refunded_at: DateTime<Utc>,
) -> Result<bool, LearningError> {
    let rows = diesel::insert_into(course_refunds::table)
        .values((
            course_refunds::refund_no.eq(refund_no.get()),
            course_refunds::choose_course_id.eq(choice.id.get()),
            course_refunds::pay_no.eq(pay_no.get()),
            course_refunds::amount_fen.eq(amount.get()),
            course_refunds::refunded_at.eq(refunded_at),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(rows == 1)
}

/// The sum of the succeeded refunds recorded against a choice.
pub async fn refunded_total(
    conn: &mut AsyncPgConnection,
    id: ChooseCourseId,
) -> Result<Fen, LearningError> {
    let sum: Option<i64> = course_refunds::table
        .filter(course_refunds::choose_course_id.eq(id.get()))
        .select(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Int8>,
        >("SUM(amount_fen)::BIGINT"))
        .get_result(conn)
        .await?;
    Fen::new(sum.unwrap_or(0))
        .map_err(|e| LearningError::CorruptRow(format!("course_refunds of {id}: {e}")))
}

/// Guarded `chosen → refunded`. Returns whether this call moved it.
pub async fn set_refunded(
    conn: &mut AsyncPgConnection,
    id: ChooseCourseId,
) -> Result<bool, LearningError> {
    let rows = diesel::update(
        choose_courses::table
            .filter(choose_courses::id.eq(id.get()))
            .filter(choose_courses::status.eq_any(ChooseCourseStatus::Refunded.source_names())),
    )
    .set((
        choose_courses::status.eq(ChooseCourseStatus::Refunded.as_str()),
        choose_courses::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    Ok(rows == 1)
}

/// Guarded `active → revoked` of the course table row that `id` enrolled. A row renewed
/// since by a later choice (bought again) belongs to that choice and is left alone.
/// Returns whether this call revoked it.
pub async fn revoke_enrolment(
    conn: &mut AsyncPgConnection,
    id: ChooseCourseId,
    now: DateTime<Utc>,
) -> Result<bool, LearningError> {
    let rows = diesel::update(
        course_tables::table
            .filter(course_tables::choose_course_id.eq(id.get()))
            .filter(course_tables::status.eq_any(EnrolmentStatus::Revoked.source_names())),
    )
    .set((
        course_tables::status.eq(EnrolmentStatus::Revoked.as_str()),
        course_tables::revoked_at.eq(now),
        course_tables::updated_at.eq(now),
    ))
    .execute(conn)
    .await?;
    Ok(rows == 1)
}
