//! The pages and their assets, compiled into the binary (no CDN, no separate front-end
//! server). Pages are rendered once at start-up with the few public settings they need.

use actix_web::{HttpResponse, web};
use paywire_contracts::ErrorBody;
use paywire_domain::{CourseId, OrderId};

use crate::{CashierError, PageSettings};

const LAYOUT_HEAD: &str = include_str!("../assets/head.html");
const CATALOGUE: &str = include_str!("../assets/catalogue.html");
const CHECKOUT: &str = include_str!("../assets/checkout.html");
const MY_COURSES: &str = include_str!("../assets/my-courses.html");
const LOGIN: &str = include_str!("../assets/login.html");

/// `(name, content type, body)` of everything under `/assets/`.
pub const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/style.css"),
    ),
    (
        "qrcode.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/vendor/qrcode.js"),
    ),
];

/// Scripts and styles come only from this origin; QR codes are `data:` images.
const CSP: &str = "default-src 'self'; img-src 'self' data:; script-src 'self'; \
                   style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

#[derive(Debug)]
pub struct Pages {
    catalogue: String,
    checkout: String,
    my_courses: String,
    login: String,
}

impl Pages {
    pub fn render(settings: &PageSettings, dev_login: bool) -> Self {
        let head = LAYOUT_HEAD
            .replace("{{WALLET_URL}}", &escape_html(&settings.wallet_url))
            .replace("{{DEV_LOGIN}}", if dev_login { "true" } else { "false" });
        let page = |title: &str, body: &str| {
            head.replace("{{TITLE}}", title)
                .replace("{{BODY}}", body.trim_end())
        };
        Self {
            catalogue: page("Courses · 课程", CATALOGUE),
            checkout: page("Checkout · 收银台", CHECKOUT),
            my_courses: page("My courses · 我的课程", MY_COURSES),
            login: page("Sign in · 登录", LOGIN),
        }
    }

    /// Every rendered page, for tests that inspect what the browser receives.
    pub fn all(&self) -> [&str; 4] {
        [
            &self.catalogue,
            &self.checkout,
            &self.my_courses,
            &self.login,
        ]
    }
}

/// Escapes a value placed inside an HTML attribute.
pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(catalogue))
        .route("/checkout", web::get().to(checkout))
        .route("/my-courses", web::get().to(my_courses))
        .route("/login", web::get().to(login))
        .route("/assets/{name}", web::get().to(asset));
}

fn html(body: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("Cache-Control", "no-cache"))
        .body(body.to_owned())
}

/// A page's handler, `GET $path` answering the rendered page of the same name, and its
/// OpenAPI operation (the doc comment is the summary).
macro_rules! page {
    ($(#[$doc:meta])* $name:ident: $path:literal, $operation_id:literal $(, $params:tt)?) => {
        $(#[$doc])*
        #[utoipa::path(
            get,
            path = $path,
            operation_id = $operation_id,
            $(params $params,)?
            responses((status = 200, description = "an HTML page (no secrets; scripts and styles from this origin only)", body = String, content_type = "text/html"))
        )]
        async fn $name(pages: web::Data<Pages>) -> HttpResponse {
            html(&pages.$name)
        }
    };
}

page! {
    /// Course catalogue page (choose a free course, buy a paid one)
    catalogue: "/", "cataloguePage"
}

page! {
    /// Checkout page: price, channel choice, QR code, countdown, live status
    checkout: "/checkout", "checkoutPage", (
        ("order_id" = OrderId, Query),
        ("course_id" = Option<CourseId>, Query, description = "the course bought; the page waits until it is learnable"),
    )
}

page! {
    /// The student's courses with learning status and validity
    my_courses: "/my-courses", "myCoursesPage"
}

page! {
    /// Dev sign-in page
    login: "/login", "loginPage",
    (("next" = Option<String>, Query, description = "same-site path to return to after signing in"))
}

/// Script, stylesheet or the vendored QR encoder, compiled into the binary
#[utoipa::path(
    get,
    path = "/assets/{name}",
    operation_id = "asset",
    params(("name" = String, Path, description = "`app.js`, `style.css` or `qrcode.js`")),
    responses(
        (status = 200, description = "the asset", content(
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
async fn asset(name: web::Path<String>) -> Result<HttpResponse, CashierError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name.as_str())
        .ok_or_else(|| CashierError::NotFound(format!("/assets/{name}")))?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Cache-Control", "no-cache"))
        .body(*body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_escaped_into_the_pages() {
        let pages = Pages::render(
            &PageSettings {
                wallet_url: "http://x/\"><script>alert(1)</script>".into(),
            },
            false,
        );
        for page in pages.all() {
            assert!(!page.contains("<script>alert(1)"), "{page}");
            assert!(page.contains("&quot;&gt;&lt;script&gt;"));
            assert!(page.contains(r#"name="paywire-dev-login" content="false""#));
            assert!(!page.contains("{{"), "unrendered placeholder in {page}");
        }
    }
}
