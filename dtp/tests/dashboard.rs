//! The dashboard in a real browser: Debian's Chromium driven over WebDriver (chromedriver,
//! through `fantoccini`) against a real DTP with its worker. Each test saves a screenshot in
//! `target/tmp/dashboard/`. Needs `chromium` and `chromium-driver` (`.ci/run` installs them);
//! `CHROMIUM` and `CHROMEDRIVER` name other binaries.
//!
//! Also, without a browser: the gate's refusals (sign-in, CSRF, origin, read-only) and the
//! router mounted under another program's prefix.

mod support;

use std::process::Stdio;
use std::time::Duration;

use common::{QueueList, TaskStatus, TaskView};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use support::{spawn_app_with, TestApp};
use testkit::{free_port, wait_until};

const TOKEN: &str = "dashboard-token";

/// A headless Chromium driven by its own chromedriver, both stopped when dropped.
struct Browser {
    client: Client,
    driver: tokio::process::Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(group) = self.driver.id() {
            // The driver's group: the driver and every Chromium process it started.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .status();
        }
    }
}

impl Browser {
    /// A desktop-sized browser; `None` (the test returns) when Chromium or its driver is
    /// missing outside CI.
    async fn start() -> Option<Browser> {
        Browser::start_as(&["--window-size=1280,900"], false).await
    }

    /// A browser started with these extra Chromium flags (window size, colour scheme), as a
    /// phone (390 × 844 CSS pixels, touch) when `phone`.
    async fn start_as(flags: &[&str], phone: bool) -> Option<Browser> {
        let chromium = testkit::tool_or_skip(
            testkit::find_program("CHROMIUM", &["chromium", "/usr/bin/chromium"]),
            "chromium",
        )?;
        let chromedriver = testkit::tool_or_skip(
            testkit::find_program("CHROMEDRIVER", &["chromedriver", "/usr/bin/chromedriver"]),
            "chromium-driver",
        )?;
        let port = free_port();
        // In a process group of its own, with the Chromium it starts: dropping the Browser
        // kills the group, so no browser outlives its test (killing only the driver left every
        // test's Chromium running).
        let driver = tokio::process::Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let base = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--force-device-scale-factor=1",
        ];
        let args: Vec<&str> = base.iter().chain(flags).copied().collect();
        let mut capabilities = serde_json::Map::new();
        let mut options = json!({ "binary": chromium.display().to_string(), "args": args });
        if phone {
            options["mobileEmulation"] = json!({ "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 2, "touch": true } });
        }
        capabilities.insert("goog:chromeOptions".into(), options);
        let url = format!("http://127.0.0.1:{port}");
        let mut tries = 0;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session with {}: {e}", chromedriver.display()),
            }
        };
        Some(Browser { client, driver })
    }

    async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("page opens");
    }

    async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!("no {css} on {}: {e}", self.url().await),
        }
    }

    async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .expect("query runs")
            .len()
    }

    /// The text of `css`. The live refresh may replace the element between finding and
    /// reading it (a stale element): it is then found again.
    async fn text(&self, css: &str) -> String {
        let mut stale = 0;
        loop {
            match self.find(css).await.text().await {
                Ok(text) => return text,
                Err(e) if stale < 20 => {
                    stale += 1;
                    let _ = e;
                }
                Err(e) => panic!("{css} kept going stale: {e}"),
            }
        }
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// Waits until the address shown satisfies `done` (a click's navigation has landed); the
    /// address then.
    async fn wait_for_url(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        wait_until(what, async || {
            last = self.url().await;
            done(&last)
        })
        .await;
        last
    }

    /// Waits until the text of `css` satisfies `done` (the page updating by itself).
    async fn wait_for_text(&self, css: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        wait_until(what, async || {
            last = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            done(&last)
        })
        .await;
        last
    }

    /// Saves what the browser shows as `target/tmp/dashboard/<name>.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot saved");
    }

    /// Signs in with `token` from wherever the browser is.
    async fn sign_in(&self, app: &TestApp, token: &str) {
        self.open(&app.url("/ui")).await;
        self.find("#token")
            .await
            .send_keys(token)
            .await
            .expect("types");
        self.click("form.login button[type=submit]").await;
        // The click returns before the sign-in's answer has set the cookie; a page opened
        // before then would be the sign-in page again.
        self.wait_for_url("the sign-in lands", |url| !url.contains("/ui/login"))
            .await;
    }
}

/// A DTP with its worker and the dashboard behind `TOKEN`.
async fn dtp() -> TestApp {
    spawn_app_with(|config| {
        config.api_token = Some(TOKEN.parse().expect("token"));
    })
    .await
}

async fn create(app: &TestApp, body: Value) -> TaskView {
    let response = app
        .client
        .post(app.url("/tasks"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(
        response.status(),
        201,
        "{}",
        response.text().await.unwrap_or_default()
    );
    response.json().await.expect("task")
}

/// `GET path` of the API, as its JSON.
async fn api<T: serde::de::DeserializeOwned>(app: &TestApp, path: &str) -> T {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.expect("JSON")
}

async fn task(app: &TestApp, id: i64) -> TaskView {
    api(app, &format!("/tasks/{id}")).await
}

/// One `demo-fail` task (one attempt) per entry of `queues`, once the worker has failed them all.
async fn failed_by_worker(app: &TestApp, queues: &[&'static str]) -> Vec<(&'static str, i64)> {
    let mut ids = Vec::new();
    for &queue in queues {
        let body = json!({"type": "demo-fail", "queue": queue, "maxAttempts": 1});
        ids.push((queue, create(app, body).await.id));
    }
    for (_, id) in &ids {
        wait_status(app, *id, TaskStatus::Failed).await;
    }
    ids
}

async fn wait_status(app: &TestApp, id: i64, status: TaskStatus) -> TaskView {
    let mut last = None;
    wait_until(&format!("task {id} is {status:?}"), async || {
        let t = task(app, id).await;
        let done = t.status == status;
        last = Some(t);
        done
    })
    .await;
    last.expect("read")
}

#[tokio::test]
async fn sign_in_then_the_counts_change_by_themselves_as_tasks_complete() {
    let app = dtp().await;
    let Some(browser) = Browser::start().await else {
        return;
    };

    browser.open(&app.url("/ui/tasks?status=FAILED")).await;
    assert!(
        browser.url().await.contains("/ui/login"),
        "{}",
        browser.url().await
    );
    browser
        .find("#token")
        .await
        .send_keys("not-the-token")
        .await
        .expect("types");
    browser.click("form.login button[type=submit]").await;
    let refused = browser.text("p.error").await;
    assert!(refused.contains("not one of"), "{refused}");
    browser.screenshot("login-refused").await;

    browser
        .find("#token")
        .await
        .send_keys(TOKEN)
        .await
        .expect("types");
    browser.click("form.login button[type=submit]").await;
    browser.find("#state-tabs").await;
    assert!(
        browser.url().await.ends_with("/ui/tasks?status=FAILED"),
        "back where the sign-in started: {}",
        browser.url().await
    );

    browser.open(&app.url("/ui")).await;
    let before = browser.text("#totals").await;
    assert!(before.contains("Succeeded\n0"), "{before}");
    // Marks this page: a full reload would lose the mark.
    browser
        .client
        .execute("window.dashboardMark = 'kept';", vec![])
        .await
        .expect("mark");
    for n in 0..6 {
        create(
            &app,
            json!({"type": "count", "queue": "mail", "payload": {"ms": 300, "n": n}}),
        )
        .await;
    }
    for _ in 0..2 {
        create(
            &app,
            json!({"type": "demo-fail", "queue": "billing", "maxAttempts": 2}),
        )
        .await;
    }
    let after = browser
        .wait_for_text(
            "#totals",
            "the overview shows 6 succeeded and 2 failed",
            |t| t.contains("Succeeded\n6") && t.contains("Failed\n2"),
        )
        .await;
    assert!(after.contains("Pending\n0"), "{after}");
    let row = browser.text("#queue-counts tr[data-queue=mail]").await;
    assert!(row.contains("mail") && row.contains('6'), "{row}");
    // The charts follow once every process has added its minute (every 5 s).
    let series = |name: &str| format!("#charts li[data-series={name}]");
    for (name, total) in [("succeeded", "6"), ("failed", "2"), ("retried", "2")] {
        let css = series(name);
        wait_until(
            &format!("the chart counts {total} {name}"),
            async || match browser.client.find(Locator::Css(&css)).await {
                Ok(li) => li.attr("data-total").await.ok().flatten().as_deref() == Some(total),
                Err(_) => false,
            },
        )
        .await;
    }
    let mark = browser
        .client
        .execute("return window.dashboardMark;", vec![])
        .await
        .expect("read mark");
    assert_eq!(mark, json!("kept"), "the page updated without a reload");
    browser.screenshot("overview").await;
}

#[tokio::test]
async fn filters_by_state_and_queue_live_in_the_url_and_a_shared_link_shows_the_same() {
    let app = dtp().await;
    let mut failed_b = Vec::new();
    for queue in ["alpha", "beta"] {
        for _ in 0..2 {
            let t = create(
                &app,
                json!({"type": "demo-fail", "queue": queue, "maxAttempts": 1}),
            )
            .await;
            if queue == "beta" {
                failed_b.push(t.id);
            }
        }
        create(&app, json!({"type": "count", "queue": queue})).await;
    }
    for id in &failed_b {
        wait_status(&app, *id, TaskStatus::Failed).await;
    }
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.sign_in(&app, TOKEN).await;
    browser.open(&app.url("/ui/tasks")).await;
    browser.click("#state-tabs a[data-state=FAILED]").await;
    browser.find("#filters").await;
    browser
        .find("#filters select[name=queue]")
        .await
        .select_by_value("beta")
        .await
        .expect("select");
    browser.click("#filters button[type=submit]").await;
    let shared = browser
        .wait_for_url("the filters are in the address", |url| {
            url.contains("status=FAILED") && url.contains("queue=beta")
        })
        .await;
    let ids = |browser: &Browser| {
        let client = browser.client.clone();
        async move {
            let rows = client
                .find_all(Locator::Css("#tasks tbody tr"))
                .await
                .expect("rows");
            let mut ids = Vec::new();
            for row in rows {
                let id = row.attr("data-task").await.expect("attr").expect("id");
                ids.push(id.parse::<i64>().expect("numeric"));
            }
            ids.sort_unstable();
            ids
        }
    };
    let shown = ids(&browser).await;
    assert_eq!(shown, failed_b, "only beta's FAILED tasks");
    browser.screenshot("tasks-filtered").await;

    // Someone else opens the link: after signing in, the same list.
    let Some(other) = Browser::start().await else {
        return;
    };
    other.open(&shared).await;
    other
        .find("#token")
        .await
        .send_keys(TOKEN)
        .await
        .expect("types");
    other.click("form.login button[type=submit]").await;
    other.find("#tasks").await;
    assert_eq!(other.url().await, shared);
    assert_eq!(ids(&other).await, failed_b);
}

#[tokio::test]
async fn a_task_shows_its_attempts_and_a_running_task_is_canceled() {
    let app = dtp().await;
    let t = create(
        &app,
        json!({"type": "probe-slow", "payload": {"ms": 60000}}),
    )
    .await;
    wait_status(&app, t.id, TaskStatus::Running).await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.sign_in(&app, TOKEN).await;
    browser.open(&app.url(&format!("/ui/tasks/{}", t.id))).await;
    let attempts = browser.text("#attempts tbody").await;
    assert!(attempts.contains("running"), "{attempts}");
    let worker = task(&app, t.id).await.worker_id.expect("a worker");
    assert!(attempts.contains(&worker), "{attempts} names {worker}");
    assert_eq!(
        browser.count("#task-actions form[action$='/retry']").await,
        0
    );

    browser
        .click("#task-actions form[action$='/cancel'] button")
        .await;
    browser
        .client
        .accept_alert()
        .await
        .expect("confirm the cancel");
    let notice = browser.text("p.flash").await;
    assert!(notice.contains("Canceled"), "{notice}");
    assert!(browser.text(".task-head").await.contains("CANCELED"));
    assert_eq!(task(&app, t.id).await.status, TaskStatus::Canceled);
    wait_until("the handler is stopped", async || {
        app.probes.was_aborted(t.id)
    })
    .await;
    browser.screenshot("task-canceled").await;
}

#[tokio::test]
async fn a_failed_task_is_retried_and_its_second_attempt_is_listed() {
    let app = dtp().await;
    let t = create(&app, json!({"type": "demo-fail", "maxAttempts": 1})).await;
    wait_status(&app, t.id, TaskStatus::Failed).await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.sign_in(&app, TOKEN).await;
    browser.open(&app.url(&format!("/ui/tasks/{}", t.id))).await;
    let attempts = browser.text("#attempts tbody").await;
    assert!(attempts.contains("demo-fail always fails"), "{attempts}");
    browser
        .click("#task-actions form[action$='/retry'] button")
        .await;
    assert!(browser.text("p.flash").await.contains("Retried"));
    let again = browser
        .wait_for_text("#attempts tbody", "the second attempt is listed", |t| {
            t.lines()
                .filter(|l| l.contains("demo-fail always fails"))
                .count()
                == 2
        })
        .await;
    assert!(again.contains("(attempt 2)"), "{again}");
    let done = wait_status(&app, t.id, TaskStatus::Failed).await;
    assert_eq!(done.attempt_count, 2);
    browser.screenshot("task-retried").await;
}

#[tokio::test]
async fn bulk_retry_of_all_failed_in_a_queue_confirms_the_count_and_leaves_others_alone() {
    let app = dtp().await;
    let ids = failed_by_worker(&app, &["billing", "billing", "billing", "other", "other"]).await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.sign_in(&app, TOKEN).await;
    browser
        .open(&app.url("/ui/tasks?status=FAILED&queue=billing"))
        .await;
    browser.click("section.bulk a[href*='action=retry']").await;
    let matched = browser.find("#matched").await;
    assert_eq!(
        matched.attr("data-count").await.expect("attr").as_deref(),
        Some("3")
    );
    browser.screenshot("bulk-confirm").await;
    browser.click("section.confirm button[type=submit]").await;
    let notice = browser.text("p.flash").await;
    assert!(notice.contains("Retried 3 of 3"), "{notice}");
    for (queue, id) in ids {
        let t = if queue == "billing" {
            wait_until(&format!("task {id} ran again"), async || {
                let t = task(&app, id).await;
                t.attempt_count == 2 && t.status == TaskStatus::Failed
            })
            .await;
            task(&app, id).await
        } else {
            task(&app, id).await
        };
        let expected = if queue == "billing" { 2 } else { 1 };
        assert_eq!(
            (t.attempt_count, t.status),
            (expected, TaskStatus::Failed),
            "{queue} {id}"
        );
    }
}

#[tokio::test]
async fn failures_are_grouped_by_queue_and_error_and_a_group_is_retried_after_its_count() {
    let app = dtp().await;
    let ids = failed_by_worker(&app, &["billing", "billing", "billing", "mail"]).await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.sign_in(&app, TOKEN).await;
    browser.open(&app.url("/ui/failures")).await;
    let groups = browser
        .client
        .find_all(Locator::Css("article.failure"))
        .await
        .expect("groups");
    assert_eq!(groups.len(), 2);
    assert_eq!(
        groups[0].attr("data-queue").await.expect("attr").as_deref(),
        Some("billing")
    );
    let largest = groups[0].text().await.expect("text");
    assert!(
        largest.starts_with('3') && largest.contains("demo-fail always fails (attempt 1)"),
        "{largest}"
    );
    browser.screenshot("failures").await;
    browser
        .click("article.failure[data-queue=billing] a[href*='action=retry']")
        .await;
    let matched = browser.find("#matched").await;
    assert_eq!(
        matched.attr("data-count").await.expect("attr").as_deref(),
        Some("3")
    );
    browser.click("section.confirm button[type=submit]").await;
    assert!(browser.text("p.flash").await.contains("Retried 3 of 3"));
    for (queue, id) in ids {
        let expected = if queue == "billing" { 2 } else { 1 };
        wait_until(&format!("task {id} made {expected} attempts"), async || {
            let t = task(&app, id).await;
            t.attempt_count == expected && t.status == TaskStatus::Failed
        })
        .await;
    }
}

#[tokio::test]
async fn a_failure_group_whose_error_has_line_breaks_is_retried_whole() {
    let app = spawn_app_with(|config| {
        config.api_token = Some(TOKEN.parse().expect("token"));
        config.worker = false;
    })
    .await;
    let error = "request failed:\n  status 502\r\n  body: <html>";
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(failed_task(&app, "hooks", error).await);
    }
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.sign_in(&app, TOKEN).await;
    browser.open(&app.url("/ui/failures")).await;
    browser
        .click("article.failure[data-queue=hooks] a[href*='action=retry']")
        .await;
    let matched = browser.find("#matched").await;
    assert_eq!(
        matched.attr("data-count").await.expect("attr").as_deref(),
        Some("2")
    );
    browser.click("section.confirm button[type=submit]").await;
    let notice = browser.text("p.flash").await;
    assert!(notice.contains("Retried 2 of 2"), "{notice}");
    for id in ids {
        assert_eq!(task(&app, id).await.status, TaskStatus::Pending);
    }
}

#[tokio::test]
async fn a_queue_is_paused_and_resumed_from_the_queues_page() {
    let app = dtp().await;
    create(&app, json!({"type": "count", "queue": "mail"})).await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.sign_in(&app, TOKEN).await;
    browser.open(&app.url("/ui/queues")).await;
    browser
        .click("article[data-queue=mail] form:has(input[value=pause]) button")
        .await;
    browser
        .client
        .accept_alert()
        .await
        .expect("confirm the pause");
    assert!(browser.text("p.flash").await.contains("paused"));
    let badge = browser.text("article[data-queue=mail] .badge").await;
    assert_eq!(badge, "paused");
    let queues: QueueList = api(&app, "/queues").await;
    assert!(queues.queues.iter().any(|q| q.name == "mail" && q.paused));
    let waiting = create(&app, json!({"type": "count", "queue": "mail"})).await;
    browser
        .wait_for_text(
            "article[data-queue=mail] dl",
            "the page shows the pending task",
            |t| t.contains("Pending\n1"),
        )
        .await;
    assert_eq!(task(&app, waiting.id).await.status, TaskStatus::Pending);
    browser.screenshot("queue-paused").await;

    browser
        .click("article[data-queue=mail] form:has(input[value=resume]) button")
        .await;
    // No confirmation comes first, so the page may still show the pause's flash.
    browser
        .wait_for_text("p.flash", "the resume's flash", |t| t.contains("running"))
        .await;
    wait_status(&app, waiting.id, TaskStatus::Succeeded).await;
}

#[tokio::test]
async fn read_only_mode_hides_every_action_and_refuses_one_sent_anyway() {
    let app = spawn_app_with(|config| {
        config.ui_read_only = true;
        config.worker = false;
    })
    .await;
    let t: TaskView = app
        .client
        .post(app.url("/tasks"))
        .json(&json!({"type": "noop"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("task");
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.open(&app.url(&format!("/ui/tasks/{}", t.id))).await;
    assert!(browser.text(".who").await.contains("read-only"));
    assert_eq!(
        browser.count("main form[method=post]").await,
        0,
        "no action shown"
    );
    browser.open(&app.url("/ui/queues")).await;
    assert_eq!(
        browser.count("main form[method=post]").await,
        0,
        "no action shown"
    );
    // A cancel sent anyway, as a form of this page would send it.
    browser
        .client
        .execute(
            "const f = document.createElement('form'); f.method = 'post'; \
             f.action = arguments[0]; document.body.appendChild(f); f.submit();",
            vec![json!(format!("/ui/tasks/{}/cancel", t.id))],
        )
        .await
        .expect("submit");
    let refused = browser.text("main").await;
    assert!(refused.contains("read-only"), "{refused}");
    assert_eq!(task(&app, t.id).await.status, TaskStatus::Pending);
    browser.screenshot("read-only-refused").await;
}

#[tokio::test]
async fn on_a_phone_in_dark_mode_every_page_fits_the_screen() {
    let app = dtp().await;
    for n in 0..3 {
        create(&app, json!({"type": "demo-fail", "queue": "a-rather-long-queue-name", "maxAttempts": 1, "payload": {"n": n}})).await;
    }
    let t = create(
        &app,
        json!({"type": "count", "queue": "mail", "payload": {"nested": {"deep": [1, 2, 3]}}}),
    )
    .await;
    wait_status(&app, t.id, TaskStatus::Succeeded).await;
    let Some(browser) = Browser::start_as(&["--force-dark-mode"], true).await else {
        return;
    };
    browser.sign_in(&app, TOKEN).await;
    let width = browser
        .client
        .execute("return window.innerWidth;", vec![])
        .await
        .expect("width");
    assert_eq!(width, json!(390), "a phone's viewport");
    let dark = browser
        .client
        .execute("return matchMedia('(prefers-color-scheme: dark)').matches && getComputedStyle(document.body).backgroundColor;", vec![])
        .await
        .expect("style");
    assert_eq!(dark, json!("rgb(15, 18, 24)"), "the dark theme applies");
    let task_page = format!("/ui/tasks/{}", t.id);
    let task_title = format!("Task {}", t.id);
    for (page, title) in [
        ("/ui", "Overview"),
        ("/ui/tasks", "Tasks"),
        ("/ui/queues", "Queues"),
        ("/ui/failures", "Failures"),
        ("/ui/schedules", "Schedules"),
        ("/ui/workers", "Workers"),
        (task_page.as_str(), task_title.as_str()),
    ] {
        browser.open(&app.url(page)).await;
        assert_eq!(browser.text("main h1").await, title, "{page} rendered");
        let overflow = browser
            .client
            .execute(
                "return document.documentElement.scrollWidth - window.innerWidth;",
                vec![],
            )
            .await
            .expect("widths");
        assert!(
            overflow.as_i64().is_some_and(|o| o <= 0),
            "{page} is wider than the phone by {overflow} px"
        );
    }
    browser.open(&app.url("/ui")).await;
    browser.find("#charts").await;
    browser.screenshot("phone-dark").await;
}

// Without a browser: what the gate refuses.

/// A task of `queue` failed for good with `error`, without a worker.
async fn failed_task(app: &TestApp, queue: &str, error: &str) -> i64 {
    let t = create(
        app,
        json!({"type": "noop", "queue": queue, "maxAttempts": 1}),
    )
    .await;
    let claimed = support::claim(&app.pool, "w", 1, Duration::from_secs(30)).await;
    let failed = dtp::queue::mark_failed_or_retry(
        &app.pool,
        dtp::queue::TaskId(t.id),
        claimed[0].fence(),
        error,
        Duration::from_secs(30),
        dtp::queue::Failure::Permanent,
    );
    failed.await.expect("fail").expect("fence held");
    t.id
}

/// The `value` of the hidden input `name` in `html`.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let value = &html[start..];
    let value = &value[..value.find('"').expect("closing quote")];
    value.replace("&amp;", "&").replace("&quot;", "\"")
}

/// A session as the sign-in page makes one, for `expires` (Unix seconds).
fn session_cookie(token: &str, expires: u64) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).expect("any key");
    mac.update(format!("dtp-ui-session:{expires}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("dtp_session={expires}.{hex}")
}

#[tokio::test]
async fn a_bulk_confirmation_counts_what_the_action_applies_to_and_takes_nothing_newer() {
    let app = spawn_app_with(|config| {
        config.api_token = Some(TOKEN.parse().expect("token"));
        config.worker = false;
    })
    .await;
    let client = form_client();
    let signed = session(&app, &client).await;
    let mut failed = Vec::new();
    for _ in 0..2 {
        failed.push(failed_task(&app, "mix", "boom").await);
    }
    // Not due for years: no claim of the test's takes it.
    let pending = create(
        &app,
        json!({"type": "noop", "queue": "mix", "runAt": "2999-01-01T00:00:00Z"}),
    )
    .await;
    let page = signed.get("/ui/tasks/bulk?action=retry&queue=mix").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(
        html.contains(r#"data-count="2""#),
        "the FAILED ones: {html}"
    );
    assert!(
        html.contains(r#"data-matched="3""#),
        "of the 3 matching: {html}"
    );
    let (filter, expected, at) = (
        hidden(&html, "filter"),
        hidden(&html, "expected"),
        hidden(&html, "at"),
    );
    assert_eq!((filter.as_str(), expected.as_str()), ("queue=mix", "2"));

    // Failed after the count: not taken along.
    let newer = failed_task(&app, "mix", "boom").await;
    let done = signed
        .post(
            "/ui/tasks/bulk",
            &[
                ("action", "retry"),
                ("filter", &filter),
                ("expected", &expected),
                ("at", &at),
            ],
        )
        .await;
    assert_eq!(done.status(), 303);
    let notice = done.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(notice.contains("Retried+2+of+3"), "{notice}");
    for id in failed {
        assert_eq!(task(&app, id).await.status, TaskStatus::Pending);
    }
    assert_eq!(task(&app, newer).await.status, TaskStatus::Failed);
    assert_eq!(task(&app, pending.id).await.status, TaskStatus::Pending);

    for refused in [
        "/ui/tasks/bulk?action=retry&queue=mix&limit=5",
        "/ui/tasks/bulk?action=retry&queue=mix&idempotencyKey=k",
        "/ui/tasks/bulk?action=retry",
        "/ui/tasks/bulk?queue=mix",
    ] {
        let page = signed.get(refused).await;
        assert_eq!(page.status(), 400, "{refused}");
        let content_type = page.headers()["content-type"]
            .to_str()
            .expect("type")
            .to_owned();
        assert!(
            content_type.starts_with("text/html"),
            "{refused}: a page, not {content_type}"
        );
    }
}

#[tokio::test]
async fn queues_and_schedules_are_steered_by_name_in_the_form_even_dot_names() {
    let app = spawn_app_with(|config| {
        config.api_token = Some(TOKEN.parse().expect("token"));
        config.worker = false;
    })
    .await;
    let client = form_client();
    let signed = session(&app, &client).await;
    let schedule = app
        .client
        .post(app.url("/schedules"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "..", "cron": "0 3 * * *", "timezone": "UTC", "task": {"type": "noop"}}))
        .send()
        .await
        .expect("schedule");
    assert_eq!(schedule.status(), 201);
    let paused = signed
        .post("/ui/queues/action", &[("name", "."), ("action", "pause")])
        .await;
    assert_eq!(paused.headers()["location"], "/ui/queues");
    let limited = signed
        .post(
            "/ui/queues/action",
            &[
                ("name", "."),
                ("action", "limits"),
                ("concurrencyLimit", "3"),
                ("rateLimitPerSecond", ""),
            ],
        )
        .await;
    assert_eq!(limited.status(), 303);
    let queues: QueueList = api(&app, "/queues").await;
    let dot = queues
        .queues
        .iter()
        .find(|q| q.name == ".")
        .expect("queue .");
    assert!(dot.paused && dot.concurrency_limit == Some(3), "{dot:?}");
    let bad_limit = signed
        .post(
            "/ui/queues/action",
            &[
                ("name", "."),
                ("action", "limits"),
                ("concurrencyLimit", "0"),
            ],
        )
        .await;
    assert!(bad_limit.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .contains("concurrencyLimit"));

    let paused = signed
        .post(
            "/ui/schedules/action",
            &[("name", ".."), ("action", "pause")],
        )
        .await;
    assert_eq!(paused.headers()["location"], "/ui/schedules");
    // (Not GET /schedules/..: a URL parser resolves the dots away.)
    let schedules: common::ScheduleList = api(&app, "/schedules").await;
    let schedule = schedules
        .schedules
        .iter()
        .find(|s| s.name == "..")
        .expect("schedule ..");
    assert!(schedule.paused && schedule.next_run_at.is_none());
}

#[tokio::test]
async fn a_session_ends_when_it_expires_or_its_token_is_gone_and_is_secure_behind_tls() {
    let app = spawn_app_with(|config| {
        config.api_token = Some(TOKEN.parse().expect("token"));
        config.worker = false;
    })
    .await;
    let client = form_client();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let open = |cookie: String| {
        client
            .get(app.url("/ui/queues"))
            .header("cookie", cookie)
            .send()
    };
    assert_eq!(
        open(session_cookie(TOKEN, now + 600))
            .await
            .expect("page")
            .status(),
        200
    );
    assert_eq!(
        open(session_cookie(TOKEN, now - 1))
            .await
            .expect("page")
            .status(),
        303,
        "expired"
    );
    // Another DTP over the same database whose token changed: the old sessions end.
    let (peer, _stop) = support::spawn_peer(&app, |config| {
        config.api_token = Some("a-new-token".parse().expect("token"));
    })
    .await;
    let on_peer = client
        .get(format!("{peer}/ui/queues"))
        .header("cookie", session_cookie(TOKEN, now + 600))
        .send()
        .await
        .expect("page");
    assert_eq!(on_peer.status(), 303);

    let login = client
        .get(app.url("/ui/login"))
        .send()
        .await
        .expect("login");
    let csrf = login.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(!csrf.contains("Secure"), "plain HTTP: {csrf}");
    let csrf = csrf
        .trim_start_matches("dtp_csrf=")
        .split(';')
        .next()
        .expect("value")
        .to_owned();
    let signed = client
        .post(app.url("/ui/login"))
        .header("origin", app.address.clone())
        .header("x-forwarded-proto", "https")
        .header("cookie", format!("dtp_csrf={csrf}"))
        .form(&[("csrf", csrf.as_str()), ("token", TOKEN)])
        .send()
        .await
        .expect("sign in");
    let session = signed.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(session.ends_with("; Secure"), "{session}");
}

fn form_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A signed-in browser without a browser: its CSRF token and the cookies it sends.
struct Signed {
    client: reqwest::Client,
    origin: String,
    base: String,
    csrf: String,
    cookies: String,
}

impl Signed {
    /// POSTs `fields` and the CSRF token from this origin, as a page of the dashboard does.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut form = vec![("csrf", self.csrf.as_str())];
        form.extend_from_slice(fields);
        self.client
            .post(format!("{}{path}", self.base))
            .header("origin", &self.origin)
            .header("cookie", &self.cookies)
            .form(&form)
            .send()
            .await
            .expect("post")
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookies)
            .send()
            .await
            .expect("get")
    }
}

/// Signs in through the login form (checking the cookie it sets).
async fn session(app: &TestApp, client: &reqwest::Client) -> Signed {
    let page = client
        .get(app.url("/ui/login"))
        .send()
        .await
        .expect("login page");
    let csrf = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("dtp_csrf="))
        .and_then(|v| v.split(';').next())
        .expect("a csrf cookie")
        .to_owned();
    let mut signed = Signed {
        client: client.clone(),
        origin: app.address.clone(),
        base: app.address.clone(),
        csrf: csrf.clone(),
        cookies: format!("dtp_csrf={csrf}"),
    };
    let answer = signed
        .post(
            "/ui/login",
            &[("token", TOKEN), ("next", "https://evil.example/")],
        )
        .await;
    assert_eq!(answer.status(), 303);
    assert_eq!(
        answer.headers()["location"],
        "/ui",
        "a next outside the dashboard is not followed"
    );
    let session = answer.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Strict")
            && session.contains("Max-Age=43200"),
        "{session}"
    );
    assert!(
        !session.contains(TOKEN),
        "the cookie is not the token: {session}"
    );
    let value = session.split(';').next().expect("value");
    signed.cookies = format!("{}; {value}", signed.cookies);
    signed
}

#[tokio::test]
async fn actions_need_a_session_the_csrf_token_and_this_origin() {
    let app = spawn_app_with(|config| {
        config.api_token = Some(TOKEN.parse().expect("token"));
        config.worker = false;
    })
    .await;
    let client = form_client();
    let t = create(&app, json!({"type": "noop"})).await;
    let cancel = app.url(&format!("/ui/tasks/{}/cancel", t.id));

    let page = client
        .get(app.url("/ui/queues"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/ui/login?next=%2Fui%2Fqueues");
    let bearer_alone = client
        .get(app.url("/ui"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("page");
    assert_eq!(
        bearer_alone.status(),
        303,
        "the dashboard signs in with its cookie"
    );

    let signed = session(&app, &client).await;
    let (csrf, cookies) = (signed.csrf.clone(), signed.cookies.clone());
    let post = |origin: &str, csrf: &str| {
        client
            .post(&cancel)
            .header("origin", origin)
            .header("cookie", &cookies)
            .form(&[("csrf", csrf)])
            .send()
    };
    let other_site = post("https://evil.example", &csrf).await.expect("post");
    assert_eq!(other_site.status(), 403);
    let wrong_token = post(&app.address, "0123456789abcdef0123456789abcdef")
        .await
        .expect("post");
    assert_eq!(wrong_token.status(), 403);
    assert!(wrong_token.text().await.expect("page").contains("expired"));
    let no_session = client
        .post(&cancel)
        .header("origin", app.address.clone())
        .header("cookie", format!("dtp_csrf={csrf}"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(no_session.status(), 401);
    assert_eq!(
        task(&app, t.id).await.status,
        TaskStatus::Pending,
        "nothing changed"
    );

    let unsourced = client
        .post(&cancel)
        .header("cookie", &cookies)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(unsourced.status(), 403, "neither Origin nor Referer");
    let proxied = client
        .post(app.url("/ui/logout"))
        .header("host", "dtp-internal:8080")
        .header("x-forwarded-host", "jobs.example.com")
        .header("origin", "https://jobs.example.com")
        .header("cookie", &cookies)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(proxied.status(), 303, "behind a proxy that rewrites Host");
    let session_only = cookies
        .split("; ")
        .find(|c| c.starts_with("dtp_session="))
        .expect("session");
    let no_csrf_cookie = client
        .post(&cancel)
        .header("origin", app.address.clone())
        .header("cookie", session_only)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(no_csrf_cookie.status(), 403, "a token without its cookie");
    let forged = format!("dtp_csrf={csrf}; dtp_session=9999999999.{}", "0".repeat(64));
    let forged_session = client
        .get(app.url("/ui"))
        .header("cookie", forged)
        .send()
        .await
        .expect("page");
    assert_eq!(
        forged_session.status(),
        303,
        "a forged session is not signed in"
    );
    let everything = signed
        .post(
            "/ui/tasks/bulk",
            &[
                ("action", "cancel"),
                ("filter", ""),
                ("expected", "5"),
                ("at", "2999-01-01T00:00:00Z"),
            ],
        )
        .await;
    assert_eq!(
        everything.status(),
        400,
        "a bulk action without a filter needs all=1"
    );
    let grown = signed
        .post(
            "/ui/tasks/bulk",
            &[
                ("action", "cancel"),
                ("filter", "status=PENDING"),
                ("expected", "0"),
                ("at", "2999-01-01T00:00:00Z"),
            ],
        )
        .await;
    assert_eq!(grown.status(), 303);
    let notice = grown.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(notice.contains("confirm+again"), "{notice}");
    assert_eq!(
        task(&app, t.id).await.status,
        TaskStatus::Pending,
        "nothing changed"
    );
    for next in [
        "//evil.example/",
        "/\\evil.example",
        "/\t/evil.example",
        "/ui\r\nX: y",
    ] {
        let signed = client
            .post(app.url("/ui/login"))
            .header("origin", app.address.clone())
            .header("cookie", format!("dtp_csrf={csrf}"))
            .form(&[("csrf", csrf.as_str()), ("token", TOKEN), ("next", next)])
            .send()
            .await
            .expect("sign in");
        assert_eq!(
            signed.headers()["location"],
            "/ui",
            "next {next:?} is not followed"
        );
    }

    let done = post(&app.address, &csrf).await.expect("post");
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()["location"], format!("/ui/tasks/{}", t.id));
    assert_eq!(task(&app, t.id).await.status, TaskStatus::Canceled);

    let bad_id = signed.get("/ui/tasks/abc").await;
    assert_eq!(bad_id.status(), 400);
    assert!(bad_id.headers()["content-type"]
        .to_str()
        .expect("type")
        .starts_with("text/html"));
    let missing = signed.get("/ui/tasks/999999").await;
    assert_eq!(missing.status(), 404);
    assert!(missing
        .text()
        .await
        .expect("page")
        .contains("Task 999999 not found"));
}

#[tokio::test]
async fn the_router_works_under_an_embedding_programs_prefix() {
    let app = spawn_app_with(|config| config.worker = false).await;
    let state = dtp::api::AppState {
        pool: app.pool.clone(),
        operator_pool: app.pool.clone(),
        registry: dtp::handlers::HandlerRegistry::with_builtins(),
        config: std::sync::Arc::new(testkit::dtp_config(&app.db).api_config()),
        metrics: dtp::metrics::DtpMetrics::default(),
    };
    let embedded = axum::Router::new().nest(
        "/admin/jobs",
        dtp::ui::router(state, dtp::ui::UiOptions::default()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, embedded).await });
    create(&app, json!({"type": "noop", "queue": "embedded"})).await;
    let page = form_client()
        .get(format!("{address}/admin/jobs"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    let cookie = page.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(cookie.contains("Path=/admin/jobs"), "{cookie}");
    let html = page.text().await.expect("html");
    assert!(
        html.contains(r#"href="/admin/jobs/tasks""#),
        "links under the prefix"
    );
    assert!(html.contains(r#"href="/admin/jobs/assets/ui.css""#));
    assert!(html.contains("embedded"), "the queue is listed");
    let css = reqwest::get(format!("{address}/admin/jobs/assets/ui.css"))
        .await
        .expect("css");
    assert_eq!(css.status(), 200);
}
