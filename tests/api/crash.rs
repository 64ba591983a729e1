//! The promise of the project: a notification the gateway acknowledged
//! reaches its tenant even if the gateway is killed with -9 the instant it
//! acknowledged, while the tenant is down.

use std::collections::HashSet;
use std::time::Duration;

use crate::helpers::*;

// Multi-threaded: the child process's log is read with blocking calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_the_last_ack_loses_nothing() {
    need_backend!();
    const N: usize = 500;
    // The tenant's port, held but not answered: the tenant is down (its
    // deliveries time out) and no other test can take the port meanwhile.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tenant_addr = held.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("routes.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[storage]
url = "{db}"
[delivery]
timeout = "500ms"
retry = ["50ms", "100ms", "200ms", "300ms", "500ms", "1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s"]
{shop}"#,
            db = store_url_for(&dir.path().join("payrelay.db")),
            shop = shop_tenant(&format!("http://{tenant_addr}"))
        ),
    )
    .unwrap();
    let mut served = Served::start(&cfg);
    let url = format!("http://{}/funpoint/notify", served.addr);

    let client = payrelay::startup::http_client().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    for i in 0..N {
        let (client, url, permits) = (client.clone(), url.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            let order = format!("K{i:08}01");
            let body = notification(&order, &format!("T{i}"), "交易成功");
            let res = client.post(url).body(body).send().await.ok()?;
            let ok = res.status() == 200 && res.text().await.ok()? == "1|OK";
            ok.then_some(order)
        });
    }
    let mut acked = HashSet::new();
    while let Some(r) = tasks.join_next().await {
        if let Some(order) = r.unwrap() {
            acked.insert(order);
        }
    }
    // The instant the last 1|OK has arrived.
    served.child.kill().unwrap();
    served.child.wait().unwrap();
    assert_eq!(acked.len(), N, "every notification should have been acknowledged");

    let _restarted = Served::start(&cfg);
    let tenant = MockServer::start_on(held).await;
    eventually("every acknowledged notification at the tenant", Duration::from_secs(60), || {
        let got: HashSet<String> = tenant
            .received()
            .iter()
            .filter_map(|r| r.form().into_iter().find(|(k, _)| k == "MerchantTradeNo").map(|(_, v)| v))
            .collect();
        acked.is_subset(&got)
    })
    .await;
    let received = tenant.received().len();
    println!("kill -9: {N} acknowledged, {received} deliveries received ({} duplicates)", received - N);
}
