//! Each phase of an inbound notification on its own, on a real SQLite store.

use std::sync::Arc;

use super::inbound::*;
use crate::config::Config;
use crate::config::StorageUrl;
use crate::delivery::{self, Handle, Worker};
use crate::providers;
use crate::store::Status;
use crate::store::Store;
use crate::throttle::Throttle;
use bytes::Bytes;
use http::StatusCode;

const TABLE: &str = r#"
[delivery]
retry = ["1h"]
[[tenants]]
id = "shop"
base_url = "http://127.0.0.1:1"
allow_http = true
order_suffix = "01"
[tenants.funpoint]
hash_key = "265flDjIvesceXWM"
hash_iv = "pOOvhGd1V2pJbjfX"
[tenants.tappay]
"#;

struct Kit {
    config: Arc<Config>,
    worker: Worker,
    handoff: Handle,
    rx: tokio::sync::mpsc::Receiver<delivery::Handoff>,
    refused: Throttle,
    recent: super::Recent,
    _dir: tempfile::TempDir,
}

impl Kit {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::parse(TABLE, &|_| None).unwrap();
        config.storage.url = StorageUrl::Sqlite { path: dir.path().join("t.db") };
        let store = Store::open(&config.storage).await.unwrap();
        let shared = Arc::new(arc_swap::ArcSwap::from_pointee(config));
        let worker = Worker::new(shared.clone(), crate::startup::http_client().unwrap(), store);
        let (handoff, rx) = Handle::channel();
        let recent = super::Recent::default();
        Self { config: shared.load_full(), worker, handoff, rx, refused: Throttle::per_minute(100), recent, _dir: dir }
    }

    fn relay(&self) -> Relay<'_> {
        Relay {
            config: self.config.clone(),
            worker: &self.worker,
            handoff: &self.handoff,
            refused: &self.refused,
            recent: &self.recent,
        }
    }
}

fn tappay(body: &str) -> Inbound {
    let provider = providers::by_name("tappay").unwrap();
    Inbound { provider, content_type: None, body: Bytes::from(body.to_owned()), remote: None, path_tenant: None }
}

fn funpoint(body: &str) -> Inbound {
    Inbound { provider: providers::by_name("funpoint").unwrap(), ..tappay(body) }
}

#[test]
fn parse_refuses_what_the_provider_never_sends() {
    assert!(parse(&tappay(r#"{"order_number":"A01"}"#)).is_ok());
    assert_eq!(parse(&tappay("[1]")).err(), Some(Answer::refuse(StatusCode::BAD_REQUEST, "Bad Request")));
    assert!(parse(&funpoint("MerchantTradeNo=A01&merchanttradeno=B01")).is_err());
}

#[tokio::test]
async fn route_keeps_what_it_cannot_route_and_says_why() {
    let kit = Kit::new().await;
    let relay = kit.relay();
    let inbound = tappay(r#"{"order_number":"A99","rec_trade_id":"D1"}"#);
    let parsed = parse(&inbound).unwrap();
    let answer = route(&relay, &inbound, &parsed).await.err();
    assert_eq!(answer, Some(Answer::refuse(StatusCode::BAD_REQUEST, "Unknown order suffix")));
    let rows = kit.worker.store().list(&crate::store::ListFilter { limit: 10, ..Default::default() }).await;
    assert_eq!(rows.unwrap()[0].status, Status::Unroutable);
    let inbound = tappay(r#"{"order_number":"A01"}"#);
    let parsed = parse(&inbound).unwrap();
    assert_eq!(route(&relay, &inbound, &parsed).await.map(|t| t.id.as_str()).ok(), Some("shop"));
}

#[tokio::test]
async fn verify_refuses_a_wrong_mac() {
    let kit = Kit::new().await;
    let relay = kit.relay();
    let inbound = funpoint("MerchantTradeNo=A01&RtnCode=1&CheckMacValue=00");
    let parsed = parse(&inbound).unwrap();
    let tenant = route(&relay, &inbound, &parsed).await.unwrap();
    let answer = verify(&relay, &inbound, tenant, &parsed).await.err();
    assert_eq!(answer, Some(Answer::refuse(StatusCode::BAD_REQUEST, "CheckMacValue Error")));
}

#[tokio::test]
async fn store_then_acknowledge_hands_off_once_and_acks_the_duplicate() {
    let mut kit = Kit::new().await;
    let relay = kit.relay();
    let inbound = tappay(r#"{"order_number":"A01","rec_trade_id":"D1","status":0}"#);
    let parsed = parse(&inbound).unwrap();
    let tenant = route(&relay, &inbound, &parsed).await.unwrap();
    let simulated = verify(&relay, &inbound, tenant, &parsed).await.unwrap();
    for _ in 0..2 {
        let (accepted, pending) = store(&relay, &inbound, tenant, &parsed, simulated).await.unwrap();
        assert_eq!(acknowledge(&relay, &inbound, tenant, &parsed, accepted, pending).await, Answer::Ack);
    }
    drop(relay);
    let handed = kit.rx.try_recv().unwrap();
    assert_eq!(handed.callback.body.as_ref(), inbound.body.as_ref());
    assert!(kit.rx.try_recv().is_err(), "the duplicate is not handed off again");
}
