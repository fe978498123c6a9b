//! Refunds end to end: an operator's full refund revokes the course (order `refunded`,
//! learn status `refunded`), the student buys it again with a new order; a partial refund
//! keeps access.

use paywire_e2e::{Platform, count};
use serde_json::{Value, json};

const PAID_COURSE: &str = "1002";
const PRICE: i64 = 19_900;

/// Buys the paid course with `channel` and waits until it can be learned; the order id.
async fn buy(p: &Platform, student: &paywire_e2e::Student<'_>, channel: &str) -> String {
    let (status, chosen) = student.choose_course(PAID_COURSE).await.unwrap();
    assert_eq!(status, 200, "{chosen}");
    assert_eq!(chosen["status"], "awaiting_payment", "{chosen}");
    let choose_id = chosen["choose_course_id"].as_str().unwrap();
    let (status, order) = student.create_order(choose_id).await.unwrap();
    assert_eq!(status, 201, "{order}");
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    let (status, pay) = student.pay(&order_id, channel).await.unwrap();
    assert_eq!(status, 200, "{pay}");
    let paid = p
        .wallet_pay(pay["code_url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(paid.status().as_u16(), 200);
    student
        .wait_for_order_status(&order_id, "paid")
        .await
        .unwrap();
    student
        .wait_for_learn_status(PAID_COURSE, "can_learn")
        .await
        .unwrap();
    order_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_refund_revokes_the_course_and_the_student_buys_it_again() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let alice = p.student("alice");
    let first = buy(&p, &alice, "alipay").await;

    let (status, ticket) = p.operator_refund(&first, Value::Null).await?;
    assert_eq!(status, 201, "{ticket}");
    assert_eq!(ticket["amount_fen"], PRICE);
    // Asking again answers the same refund.
    let (status, again) = p.operator_refund(&first, Value::Null).await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["refund_no"], ticket["refund_no"]);

    alice.wait_for_order_status(&first, "refunded").await?;
    alice.wait_for_learn_status(PAID_COURSE, "refunded").await?;
    let (_, mine) = alice
        .get(format!("{}/api/learning/my-courses", p.learning_url))
        .await?;
    assert_eq!(mine["courses"][0]["learn_status"], "refunded", "{mine}");
    assert!(mine["courses"][0]["refunded_at"].is_string(), "{mine}");

    // Bought again, with the other channel: a new choice, a new order, access back.
    let second = buy(&p, &alice, "wechat").await;
    assert_ne!(second, first);
    let (_, old) = alice.order(&first).await?;
    assert_eq!(old["status"], "refunded");
    let rows = format!(
        "SELECT count(*) AS n FROM course_tables WHERE user_id = '{}'",
        alice.user
    );
    assert_eq!(count(&p.learning_db, &rows).await?, 1);

    // A partial refund of the new order keeps the course and the order paid.
    let (status, part) = p
        .operator_refund(&second, json!({"amount_fen": 100, "reason": "goodwill"}))
        .await?;
    assert_eq!(status, 201, "{part}");
    assert_eq!(part["amount_fen"], 100);
    paywire_testkit::eventually(paywire_e2e::SETTLE, || async {
        (count(&p.learning_db, "SELECT count(*) AS n FROM course_refunds")
            .await
            .ok()?
            == 2)
            .then_some(())
    })
    .await?;
    assert_eq!(alice.learn_status(PAID_COURSE).await?, "can_learn");
    assert_eq!(alice.order(&second).await?.1["status"], "paid");

    // Students cannot refund, nor can the order service's credential (operators only).
    let (status, _) = alice
        .post(
            format!("{}/internal/orders/{second}/refund", p.order_internal_url),
            json!({}),
        )
        .await?;
    assert_eq!(status, 401);
    let (status, body) = p.operator_refund(&second, json!({"amount_fen": 0})).await?;
    assert_eq!(status, 400, "{body}");
    Ok(())
}
