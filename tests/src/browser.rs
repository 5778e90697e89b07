//! A real headless Chromium, driven through chromedriver (WebDriver), for the pages people
//! look at. Each `Browser` runs its own chromedriver on a free port and ends it on drop.

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    /// Where screenshots go.
    shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium; screenshots go to `shots` (tests give
    /// `target/tmp/screenshots/<test>`).
    pub fn start(shots: PathBuf) -> Browser {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (scripts/setup installs chromium-driver)");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = runtime.block_on(async {
            let mut capabilities = serde_json::Map::new();
            capabilities.insert(
                "goog:chromeOptions".into(),
                serde_json::json!({
                    "binary": "/usr/bin/chromium",
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,900"],
                }),
            );
            loop {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                match ClientBuilder::new(connector)
                    .capabilities(capabilities.clone())
                    .connect(&url)
                    .await
                {
                    Ok(client) => break client,
                    Err(error) if Instant::now() < deadline => {
                        let _ = error;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(error) => panic!("no WebDriver session within 30 s: {error}"),
                }
            }
        });
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            runtime,
            client: Some(client),
            driver,
            shots,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("open until dropped")
    }

    pub fn goto(&self, url: &str) {
        self.runtime
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The text of the first element matching `css`, if there is one.
    pub fn text(&self, css: &str) -> Option<String> {
        self.runtime.block_on(async {
            let element = self.client().find(Locator::Css(css)).await.ok()?;
            element.text().await.ok()
        })
    }

    /// An attribute of every element matching `css`.
    pub fn attributes(&self, css: &str, name: &str) -> Vec<Option<String>> {
        self.runtime.block_on(async {
            let Ok(elements) = self.client().find_all(Locator::Css(css)).await else {
                return Vec::new();
            };
            let mut values = Vec::new();
            for element in elements {
                values.push(element.attr(name).await.ok().flatten());
            }
            values
        })
    }

    pub fn count(&self, css: &str) -> usize {
        self.runtime.block_on(async {
            self.client()
                .find_all(Locator::Css(css))
                .await
                .map_or(0, |all| all.len())
        })
    }

    /// Waits until `css`'s text satisfies `check`; returns it.
    pub fn wait_text(
        &self,
        css: &str,
        limit: Duration,
        mut check: impl FnMut(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        let mut last = None;
        loop {
            if let Some(text) = self.text(css) {
                if check(&text) {
                    return text;
                }
                last = Some(text);
            }
            assert!(
                Instant::now() < deadline,
                "{css} did not show what was awaited within {limit:?}; last: {last:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first element matching `css`, which must be there.
    fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.runtime
            .block_on(self.client().find(Locator::Css(css)))
            .unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    pub fn click(&self, css: &str) {
        let element = self.element(css);
        self.runtime.block_on(element.click()).unwrap();
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css);
        self.runtime.block_on(async {
            element.clear().await.unwrap();
            element.send_keys(text).await.unwrap();
        });
    }

    /// Saves the page as `<name>.png` in this test's screenshot folder; returns the path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .runtime
            .block_on(self.client().screenshot())
            .expect("a screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Runs `script` in the page and returns its value.
    pub fn eval(&self, script: &str) -> serde_json::Value {
        self.runtime
            .block_on(self.client().execute(script, Vec::new()))
            .unwrap_or_else(|e| panic!("script failed: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
