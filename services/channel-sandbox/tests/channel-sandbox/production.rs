//! The sandbox never runs in production, whatever its settings.

#[test]
fn the_sandbox_refuses_to_run_in_production() {
    let out = paywire_testkit::production::assert_refused(
        env!("CARGO_BIN_EXE_channel-sandbox"),
        &[],
        &[
            "the channel sandbox imitates WeChat Pay and Alipay",
            "1 setting is",
        ],
        &[],
    );
    assert!(!out.contains("listening"), "{out}");
}
