//! The learning center's HTTP API as OpenAPI, generated from the handlers' annotations and
//! the contract types; `cargo xtask proto-docs` writes it to `proto-docs/`.

use utoipa::OpenApi;

use super::{choose, courses, internal};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Paywire learning center",
        description = "Course catalogue, choosing courses, learn status and the student's \
courses. Paid choices become learnable when the pay result for their order arrives on the \
broker (queue `learning-center.pay-result`, see `pay-result.asyncapi.yaml`).

Ids are snowflake numbers sent as strings (JavaScript loses precision above 2^53); money is an \
integer number of fen."
    ),
    paths(
        courses::list,
        choose::choose,
        choose::learn_status,
        choose::my_courses,
        internal::choose_course,
    ),
    security(("bearerAuth" = [])),
    tags(
        (name = "public", description = "called by students' clients with a user JWT"),
        (name = "internal", description = "called by other Paywire services with the service credential"),
    )
)]
pub struct ApiDoc;
