//! A real headless Chromium driven over WebDriver by chromedriver, for the tests of the operator pages. Without
//! Chromium a test fails and says how to get it.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use platform::testing::{eventually, eventually_ok};
use serde_json::{json, Value};

use super::WAIT;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session on it; the process is killed when this is dropped.
pub struct Browser {
    driver: Child,
    profile: PathBuf,
    url: String,
    session: String,
    http: reqwest::Client,
}

impl Browser {
    pub async fn launch() -> Browser {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
            "{CHROMEDRIVER} or {CHROMIUM} is missing: scripts/test.sh installs them (ensure_chromium in \
             scripts/lib.sh: apt-get install chromium chromium-driver)"
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let profile = std::env::temp_dir().join(platform::testing::unique_name("chromium"));
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut browser = Browser { driver, profile, url, session: String::new(), http };
        browser.wait_ready().await;
        let profile_arg = format!("--user-data-dir={}", browser.profile.display());
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                profile_arg]}}}});
        let created = browser.call(reqwest::Method::POST, "/session", capabilities).await;
        browser.session = created["sessionId"].as_str().expect("a session ID").to_owned();
        browser
    }

    pub async fn wait_ready(&self) {
        eventually("chromedriver to get ready", WAIT, async || {
            let response = self.http.get(format!("{}/status", self.url)).send().await.ok()?;
            let body: Value = response.json().await.unwrap_or_default();
            (body["value"]["ready"] == true).then_some(())
        })
        .await
    }

    /// One WebDriver command; returns its `value`, or the error answer.
    pub async fn try_call(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value, String> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.url));
        if method != reqwest::Method::GET {
            request = request.json(&body);
        }
        let response = request.send().await.expect("chromedriver answers");
        let status = response.status();
        let answer: Value = response.json().await.expect("a JSON answer");
        if status.is_success() {
            Ok(answer["value"].clone())
        } else {
            Err(format!("WebDriver {method} {path}: {status} {}", answer["value"]["message"]))
        }
    }

    /// One WebDriver command; returns its `value`.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.try_call(method, path, body).await.unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn session_call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body).await
    }

    pub async fn open(&self, url: &str) {
        self.session_call(reqwest::Method::POST, "/url", json!({ "url": url })).await;
    }

    pub async fn find(&self, css: &str) -> String {
        let found =
            self.session_call(reqwest::Method::POST, "/element", json!({"using": "css selector", "value": css})).await;
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {found}")).to_owned()
    }

    pub async fn try_text(&self, css: &str) -> Result<String, String> {
        let path = format!("/session/{}/element", self.session);
        let found = self.try_call(reqwest::Method::POST, &path, json!({"using": "css selector", "value": css})).await?;
        let element = found[ELEMENT].as_str().ok_or_else(|| format!("no element {css}: {found}"))?;
        let path = format!("/session/{}/element/{element}/text", self.session);
        let text = self.try_call(reqwest::Method::GET, &path, Value::Null).await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// The text of `css` once it satisfies `expected`: pages load after a click, so the old page may still show.
    pub async fn text_when(&self, css: &str, expected: impl Fn(&str) -> bool) -> String {
        let what = format!("{css} to show what was expected");
        let shown = eventually_ok(&what, WAIT, async || match self.try_text(css).await {
            Ok(text) if expected(&text) => Ok(Some(text)),
            Ok(text) => Err(anyhow::anyhow!("it shows {text:?}")),
            Err(e) => Err(anyhow::anyhow!(e)),
        });
        shown.await.unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub async fn text_is(&self, css: &str, expected: &str) {
        self.text_when(css, |text| text == expected).await;
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.session_call(reqwest::Method::POST, &format!("/element/{element}/click"), json!({})).await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.session_call(reqwest::Method::POST, &format!("/element/{element}/value"), json!({ "text": text })).await;
    }

    pub async fn current_url(&self) -> String {
        self.session_call(reqwest::Method::GET, "/url", Value::Null).await.as_str().unwrap_or_default().to_owned()
    }

    /// Saves what the window shows, 1280 pixels wide, as a PNG at `path` (for the screenshots in docs/).
    pub async fn capture_png(&self, path: &str) {
        use base64::Engine as _;
        self.session_call(reqwest::Method::POST, "/window/rect", json!({"width": 1280, "height": 900})).await;
        let encoded = self.session_call(reqwest::Method::GET, "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a base64 screenshot"))
            .expect("a base64 screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }

    pub async fn quit(&self) {
        let _ = self.http.delete(format!("{}/session/{}", self.url, self.session)).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
