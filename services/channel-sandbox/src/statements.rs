//! What both channels' statements share in the sandbox: the day a record belongs to (the
//! channels' day is China Standard Time), the files behind the download links (valid a
//! few minutes, as the channels' links are), and the `corrupt_statement` fault.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use paywire_channels::random_alphanumeric;

/// WeChat documents 5 minutes for `download_url` (Alipay 30 seconds); the sandbox keeps
/// every link for the longer of the two so slow test machines do not flake.
pub const LINK_VALIDITY: Duration = Duration::from_secs(300);

/// The channels keep three months of bills.
pub const HISTORY_DAYS: i64 = 90;

/// The China Standard Time date of `at`.
pub fn cst_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00"))
        .date_naive()
}

/// Files waiting behind their one-time tokens.
#[derive(Debug, Default)]
pub struct Files {
    files: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
}

impl Files {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Vec<u8>, Instant)>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `bytes` and returns the token that fetches them.
    pub fn put(&self, bytes: Vec<u8>) -> String {
        let token = random_alphanumeric(48);
        let mut files = self.lock();
        files.retain(|_, (_, at)| at.elapsed() < LINK_VALIDITY);
        files.insert(token.clone(), (bytes, Instant::now()));
        token
    }

    /// The file behind `token` while its link is valid.
    pub fn get(&self, token: &str) -> Option<Vec<u8>> {
        self.lock()
            .get(token)
            .filter(|(_, at)| at.elapsed() < LINK_VALIDITY)
            .map(|(bytes, _)| bytes.clone())
    }
}

/// The `corrupt_statement` fault: one byte in the middle changed, after the hash was
/// announced (a transfer gone wrong).
pub fn corrupt(mut bytes: Vec<u8>) -> Vec<u8> {
    let at = bytes.len() / 2;
    if let Some(b) = bytes.get_mut(at) {
        *b ^= 0x20;
    } else {
        bytes.push(b'x');
    }
    bytes
}

/// `yyyy-MM-dd`, or `None`.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|_| text.len() == 10)
}

/// A bill can be asked for from three months back up to today (the real channels make a
/// day's bill the next morning; the sandbox serves the day so far, so a test need not
/// wait for tomorrow).
pub fn servable(date: NaiveDate, now: DateTime<Utc>) -> bool {
    let today = cst_date(now);
    date <= today && date >= today - chrono::Duration::days(HISTORY_DAYS)
}
