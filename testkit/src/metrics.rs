//! Reading a service's `/metrics` the way Prometheus does: the Prometheus text format, each
//! sample a series (`name{label="value",…}`, labels in the order the service writes them) and
//! its value.

use std::collections::BTreeMap;
use std::time::Duration;

/// One scrape's samples, by series.
#[derive(Debug, Clone, Default)]
pub struct Scrape(pub BTreeMap<String, f64>);

impl Scrape {
    /// Parses a Prometheus text exposition; panics on a line that is not a sample or comment,
    /// since that is what the test is about.
    pub fn parse(text: &str) -> Scrape {
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("not a sample value: {line:?}"));
            samples.insert(series.to_owned(), value);
        }
        Scrape(samples)
    }

    /// The value of `series`, 0 when absent (a counter not yet incremented has no series).
    pub fn value(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// Every `(series, expected)` whose value differs, as readable lines.
    pub fn mismatches(&self, expected: &[(&str, f64)]) -> Vec<String> {
        expected
            .iter()
            .filter(|(series, value)| self.value(series) != *value)
            .map(|(series, value)| {
                format!("{series}: expected {value}, got {}", self.value(series))
            })
            .collect()
    }
}

/// Scrapes `url` (a service's `/metrics`), asserting a 200 in the Prometheus text format.
pub async fn scrape(client: &reqwest::Client, url: &str) -> Scrape {
    let response = client.get(url).send().await.expect("scrape sent");
    assert_eq!(
        response.status(),
        reqwest::StatusCode::OK,
        "scrape of {url}"
    );
    let content_type = crate::header(response.headers(), "content-type");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "content type {content_type}"
    );
    Scrape::parse(&response.text().await.expect("scrape body"))
}

/// Scrapes `url` until every `expected` value is there (counters are incremented just after the
/// database has the outcome they count, and depth gauges are read once a second); panics with
/// the differences after 30 s.
pub async fn scrape_until(client: &reqwest::Client, url: &str, expected: &[(&str, f64)]) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let scrape = scrape(client, url).await;
        let wrong = scrape.mismatches(expected);
        if wrong.is_empty() {
            return scrape;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics of {url} never matched:\n{}",
            wrong.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
