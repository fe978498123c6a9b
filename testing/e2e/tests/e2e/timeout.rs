//! The order timeout through the real delay queue, gateway and sandbox: an order left
//! unpaid is closed at the channel first, then locally, and the student can order again.

use paywire_e2e::{Options, Platform, SETTLE, count};
use serde_json::Value;

const PAID_COURSE: &str = "1002";

/// The sandbox's record of the trade whose QR code is `code_url`.
async fn trade(p: &Platform, code_url: &str) -> anyhow::Result<Value> {
    let trades: Vec<Value> = p
        .client()
        .get(format!("{}/sandbox/trades", p.sandbox_url))
        .send()
        .await?
        .json()
        .await?;
    trades
        .into_iter()
        .find(|t| t["code_url"] == code_url)
        .ok_or_else(|| anyhow::anyhow!("no sandbox trade for {code_url}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_left_unpaid_is_closed_at_the_channel_and_locally_then_ordered_again()
-> anyhow::Result<()> {
    // The attempt TTL stays below the order TTL, as the order service demands at start.
    let p = Platform::start_with(Options {
        order_ttl_secs: Some(4),
        attempt_ttl_secs: Some(3),
    })
    .await?;
    let alice = p.student("alice");
    let (status, chosen) = alice.choose_course(PAID_COURSE).await?;
    assert_eq!(status, 200, "{chosen}");
    let choose_id = chosen["choose_course_id"].as_str().unwrap().to_owned();

    let (status, order) = alice.create_order(&choose_id).await?;
    assert_eq!(status, 201, "{order}");
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    let (status, pay) = alice.pay(&order_id, "wechat").await?;
    assert_eq!(status, 200, "{pay}");
    let code_url = pay["code_url"].as_str().unwrap().to_owned();

    // "I have paid" before paying: the gateway asks the channel, which says not paid.
    let (status, result) = alice.pay_result(&order_id).await?;
    assert_eq!(status, 200, "{result}");
    assert_eq!(
        (result["status"].as_str(), result["paid"].as_bool()),
        (Some("unpaid"), Some(false))
    );

    // The student walks away; the timeout closes the attempt at the channel, then the order.
    alice.wait_for_order_status(&order_id, "closed").await?;
    assert_eq!(trade(&p, &code_url).await?["trade_state"], "CLOSED");
    // Too late to pay that code, and the order no longer takes attempts.
    let late = p.wallet_pay(&code_url).await?;
    assert!(!late.status().is_success(), "{}", late.status());
    let (status, body) = alice.pay(&order_id, "wechat").await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("order_closed"))
    );
    assert_eq!(
        alice.learn_status(PAID_COURSE).await?,
        "not_chosen_or_unpaid"
    );

    // The choice still awaits payment: a new order, paid this time.
    let (status, again) = alice.create_order(&choose_id).await?;
    assert_eq!(status, 201, "{again}");
    let new_id = again["order_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, order_id);
    let (status, pay) = alice.pay(&new_id, "wechat").await?;
    assert_eq!(status, 200, "{pay}");
    let code_url = pay["code_url"].as_str().unwrap().to_owned();
    assert_eq!(p.wallet_pay(&code_url).await?.status().as_u16(), 200);

    let (status, result) = alice.pay_result(&new_id).await?;
    assert_eq!(
        (status, result["paid"].as_bool()),
        (200, Some(true)),
        "{result}"
    );
    alice.wait_for_order_status(&new_id, "paid").await?;
    alice
        .wait_for_learn_status(PAID_COURSE, "can_learn")
        .await?;

    // The new order's own timeout fires later and leaves the paid order alone.
    paywire_testkit::eventually(SETTLE, || async {
        let handled = count(
            &p.order_db,
            "SELECT count(*) AS n FROM processed_messages WHERE consumer = 'order-timeout'",
        )
        .await
        .ok()?;
        (handled == 2).then_some(())
    })
    .await?;
    let (_, after) = alice.order(&new_id).await?;
    assert_eq!(after["status"], "paid");
    let (_, old) = alice.order(&order_id).await?;
    assert_eq!(old["status"], "closed");

    // Exactly one enrolment.
    let enrolments = format!(
        "SELECT count(*) AS n FROM course_tables WHERE user_id = '{}'",
        alice.user
    );
    assert_eq!(count(&p.learning_db, &enrolments).await?, 1);
    Ok(())
}
