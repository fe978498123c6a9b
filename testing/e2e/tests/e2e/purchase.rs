//! The purchase flow through the real services, the real signed and encrypted channel
//! callback, the outbox, the fanout exchange and both consumers.

use paywire_e2e::{Platform, count};
use serde_json::json;

const PAID_COURSE: &str = "1002";
const FREE_COURSE: &str = "1001";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wechat_purchase_reaches_order_and_learning_center_exactly_once() -> anyhow::Result<()> {
    purchase_reaches_order_and_learning_center_exactly_once(
        "wechat",
        "weixin://wxpay/bizpayurl?pr=",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alipay_purchase_reaches_order_and_learning_center_exactly_once() -> anyhow::Result<()> {
    purchase_reaches_order_and_learning_center_exactly_once("alipay", "https://qr.alipay.com/")
        .await
}

/// WeChat Pay API v2 (XML): the same purchase through the third channel (issue 14).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wechat_v2_purchase_reaches_order_and_learning_center_exactly_once() -> anyhow::Result<()> {
    purchase_reaches_order_and_learning_center_exactly_once(
        "wechat_v2",
        "weixin://wxpay/bizpayurl?pr=",
    )
    .await
}

async fn purchase_reaches_order_and_learning_center_exactly_once(
    channel: &str,
    code_prefix: &str,
) -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let alice = p.student("alice");

    let (status, courses) = alice
        .get(format!("{}/api/learning/courses", p.learning_url))
        .await?;
    assert_eq!(status, 200);
    let course = courses
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == PAID_COURSE)
        .expect("seeded paid course")
        .clone();
    assert_eq!(course["charge"], "paid");
    let price = course["price_fen"].as_i64().unwrap();

    let (status, chosen) = alice.choose_course(PAID_COURSE).await?;
    assert_eq!(status, 200, "{chosen}");
    assert_eq!(chosen["status"], "awaiting_payment");
    let choose_id = chosen["choose_course_id"].as_str().unwrap().to_owned();
    assert_eq!(
        alice.learn_status(PAID_COURSE).await?,
        "not_chosen_or_unpaid"
    );

    // The client's idea of the price is ignored: it comes from the learning center.
    let (status, order) = alice
        .post(
            format!("{}/api/orders", p.order_url),
            json!({"biz_type": "course", "biz_id": choose_id, "total_fen": 1}),
        )
        .await?;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "unpaid");
    assert_eq!(order["total_fen"].as_i64(), Some(price));
    let order_id = order["order_id"].as_str().unwrap().to_owned();

    // One order per business record.
    let (status, again) = alice.create_order(&choose_id).await?;
    assert_eq!(status, 200);
    assert_eq!(again["order_id"], order_id.as_str());

    let (status, pay) = alice.pay(&order_id, channel).await?;
    assert_eq!(status, 200, "{pay}");
    let code_url = pay["code_url"].as_str().unwrap().to_owned();
    assert!(code_url.starts_with(code_prefix), "{code_url}");
    assert!(pay["expires_at"].is_string());
    // A still-valid attempt on the same channel is handed out again.
    let (_, pay_again) = alice.pay(&order_id, channel).await?;
    assert_eq!(pay_again["pay_no"], pay["pay_no"]);

    // Nobody else can see or pay Alice's order, or order her choice.
    let mallory = p.student("mallory");
    assert_eq!(mallory.order(&order_id).await?.0, 404);
    assert_eq!(mallory.pay(&order_id, channel).await?.0, 404);
    assert_eq!(mallory.create_order(&choose_id).await?.0, 404);

    let paid = p.wallet_pay(&code_url).await?;
    assert_eq!(paid.status().as_u16(), 200);

    alice.wait_for_order_status(&order_id, "paid").await?;
    alice
        .wait_for_learn_status(PAID_COURSE, "can_learn")
        .await?;
    let (_, order) = alice.order(&order_id).await?;
    assert_eq!(order["pay_no"], pay["pay_no"]);
    assert_eq!(order["channel"], channel);

    // Exactly one pay result, published after the broker's confirm, applied once by each
    // consumer, and one enrolment row.
    paywire_testkit::eventually(paywire_e2e::SETTLE, || async {
        (count(
            &p.gateway_db,
            "SELECT count(*) AS n FROM outbox WHERE published_at IS NOT NULL",
        )
        .await
        .ok()
            == Some(1))
        .then_some(())
    })
    .await?;
    assert_eq!(
        count(&p.gateway_db, "SELECT count(*) AS n FROM outbox").await?,
        1
    );
    assert_eq!(
        count(&p.order_db, "SELECT count(*) AS n FROM processed_messages").await?,
        1
    );
    assert_eq!(
        count(
            &p.learning_db,
            "SELECT count(*) AS n FROM processed_messages"
        )
        .await?,
        1
    );
    let enrolments = format!(
        "SELECT count(*) AS n FROM course_tables WHERE user_id = '{}'",
        alice.user
    );
    assert_eq!(count(&p.learning_db, &enrolments).await?, 1);

    // Paid is final: no second payment attempt, and the wallet cannot pay twice.
    let (status, body) = alice.pay(&order_id, channel).await?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(p.wallet_pay(&code_url).await?.status().as_u16(), 409);
    assert_eq!(count(&p.learning_db, &enrolments).await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_callback_and_bad_requests_change_nothing() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let bob = p.student("bob");

    // No token, bad token.
    let resp = p
        .client()
        .post(format!("{}/api/orders", p.order_url))
        .json(&json!({"biz_type": "course", "biz_id": "1"}))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 401);
    let resp = p
        .client()
        .get(format!("{}/api/learning/my-courses", p.learning_url))
        .bearer_auth("not-a-token")
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 401);

    // Unknown business record.
    assert_eq!(bob.create_order("123456789").await?.0, 404);

    let (_, chosen) = bob.choose_course(PAID_COURSE).await?;
    let choose_id = chosen["choose_course_id"].as_str().unwrap().to_owned();
    let (_, order) = bob.create_order(&choose_id).await?;
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    let (status, pay) = bob.pay(&order_id, "wechat").await?;
    assert_eq!(status, 200, "{pay}");

    // A callback that is not signed by the channel: refused the way WeChat Pay expects,
    // and nothing moves.
    let resp = p
        .client()
        .post(format!("{}/api/callback/wechat", p.gateway_url))
        .header(
            "Wechatpay-Timestamp",
            chrono::Utc::now().timestamp().to_string(),
        )
        .header("Wechatpay-Nonce", "forged")
        .header(
            "Wechatpay-Serial",
            "PUB_KEY_ID_0119000091912026112200000000000001",
        )
        .header("Wechatpay-Signature", "Zm9yZ2Vk")
        .header("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048")
        .json(&json!({"id": "x", "event_type": "TRANSACTION.SUCCESS", "resource": {}}))
        .send()
        .await?;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    let body: serde_json::Value = resp.json().await?;
    assert_eq!(body["code"], "FAIL");
    assert_eq!(
        count(&p.gateway_db, "SELECT count(*) AS n FROM outbox").await?,
        0
    );
    assert_eq!(bob.order(&order_id).await?.1["status"], "unpaid");

    // A free course enrols at once without any order.
    let (status, free) = bob.choose_course(FREE_COURSE).await?;
    assert_eq!(status, 200);
    assert_eq!(free["status"], "chosen");
    assert_eq!(bob.learn_status(FREE_COURSE).await?, "can_learn");
    assert_eq!(bob.learn_status(PAID_COURSE).await?, "not_chosen_or_unpaid");
    Ok(())
}
