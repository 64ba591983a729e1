//! The `payrelay` binary's commands, run as a user would.

use std::process::{Command, Output};

use crate::helpers::{STAGE_IV, STAGE_KEY};

fn payrelay(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_payrelay"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_passes_the_repository_table_and_prints_no_secret() {
    let o = payrelay(
        &["check"],
        &[
            ("PAYGO_HASH_KEY", STAGE_KEY),
            ("PAYGO_HASH_IV", STAGE_IV),
            ("PAYRELAY_ADMIN_TOKEN", "adm-tok-123456-0123456789abcdefghij"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for (id, code, suffix) in [
        ("paygo", "paygo", "01"),
        ("ezpay", "ezpay", "02"),
        ("ro", "ro", "03"),
        ("tt-paygo", "tt.paygo", "04"),
        ("test-paygo", "test.paygo", "05"),
    ] {
        assert!(out.contains(&format!("tenant {id}\n")), "{out}");
        assert!(out.contains(&format!("domain codes  {code}\n")), "{out}");
        assert!(out.contains(&format!("order suffix  {suffix}\n")), "{out}");
    }
    assert!(out.contains("https://paygo.tw/funpoint_r.php"));
    assert!(out.contains("verified (keys set, SHA-256)"));
    for secret in [STAGE_KEY, STAGE_IV, "adm-tok-123456-0123456789abcdefghij"] {
        assert!(!out.contains(secret) && !stderr(&o).contains(secret), "check printed a secret");
    }
}

#[test]
fn check_reports_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[tenants]]\nid = \"a\"\nbase_url = \"http://a.tw\"\nhash_key = \"k\"\n[[tenants]]\nid = \"a\"\nbase_url = \"https://b.tw\"\nforward_secret = \"${MISSING_SECRET_VAR}\"\n",
    )
    .unwrap();
    let o = payrelay(&["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 4, "{err}");
    for needle in ["hash_key: unknown key", "allow_http", "more than one", "MISSING_SECRET_VAR"] {
        assert!(err.contains(needle), "nothing about {needle:?} in:\n{err}");
    }
    let o = payrelay(&["check", "--config", "/nonexistent/routes.toml"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read"));
}

#[test]
fn route_names_the_tenant_and_the_key() {
    let o = payrelay(&["route", "funpoint", "MerchantTradeNo=FP24112215304502", "RtnCode=1"], &[]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o),
        "tenant ezpay (matched by MerchantTradeNo suffix \"02\")\ndelivered to https://ezpay.mobi/funpoint_r.php\n"
    );

    let o = payrelay(&["route", "funpoint", "MerchantTradeNo=FP24112215304599"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("no funpoint tenant has order suffix \"99\""), "{}", stdout(&o));

    let o = payrelay(&["route", "funpoint", "RtnCode=1"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("MerchantTradeNo"));

    let o = payrelay(&["route", "funpoint", "tenant=ro", "MerchantTradeNo=FP03"], &[]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("tenant ro"));
    let o = payrelay(&["route", "funpoint", "tenant=ro", "MerchantTradeNo=FP01"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("does not take"));

    let o = payrelay(&["route", "paypal", "x=1"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("known: funpoint, oen, sinopac, tappay"), "{}", stderr(&o));
}

/// `route` and `check` know every provider, on a table where each has
/// tenants of its own.
#[test]
fn route_and_check_know_every_provider() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("providers.toml");
    std::fs::write(
        &path,
        r#"
[providers.tappay]
order_suffix_len = 3

[[tenants]]
id = "cafe"
base_url = "https://cafe.example"
order_suffix = "C01"
[tenants.oen]
merchant_id = "cafe"
[tenants.sinopac]
shop_no = "NA0249_001"
notify_path = "/hooks/sinopac"
[tenants.tappay]

[[tenants]]
id = "books"
base_url = "https://books.example"
[tenants.oen]
[tenants.tappay]
"#,
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["oen", "merchantId=cafe", "purpose=charge"],
            "tenant cafe (matched by merchantId \"cafe\")\ndelivered to https://cafe.example/oen/notify\n",
        ),
        (
            &["sinopac", "ShopNo=NA0249_001", "PayToken=x"],
            "tenant cafe (matched by ShopNo \"NA0249_001\")\ndelivered to https://cafe.example/hooks/sinopac\n",
        ),
        (
            &["tappay", "order_number=ORDER-9C01"],
            "tenant cafe (matched by order_number suffix \"C01\")\ndelivered to https://cafe.example/tappay/notify\n",
        ),
        (
            &["oen", "tenant=books", "purpose=refund"],
            "tenant books (matched by path tenant \"books\")\ndelivered to https://books.example/oen/notify\n",
        ),
        (
            &["tappay", "tenant=books", "order_number=X-C01"],
            "tenant books (matched by path tenant \"books\")\ndelivered to https://books.example/tappay/notify\n",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["route", "--config", config];
        all.extend(args);
        let o = payrelay(&all, &[]);
        assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
        assert_eq!(stdout(&o), expected);
    }
    let refused: [(&[&str], &str); 4] = [
        (&["oen", "merchantId=books"], "no oen tenant has merchantId \"books\""),
        (&["oen", "purpose=refund"], "the callback has no merchantId"),
        (&["sinopac", "tenant=books", "ShopNo=NA0249_001"], "no tenant \"books\" takes sinopac callbacks"),
        (&["oen", "tenant=cafe", "merchantId=other"], "tenant \"cafe\" does not take merchantId \"other\""),
    ];
    for (args, expected) in refused {
        let mut all = vec!["route", "--config", config];
        all.extend(args);
        let o = payrelay(&all, &[]);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stdout(&o).contains(expected), "{args:?}: {}", stdout(&o));
    }

    let o = payrelay(&["check", "--config", config], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for line in [
        "tappay         order suffix length 3",
        "  oen           merchant_id cafe; notify https://cafe.example/oen/notify",
        "  sinopac       shop_no NA0249_001; notify https://cafe.example/hooks/sinopac; return https://cafe.example/sinopac/return",
        "  tappay        notify https://cafe.example/tappay/notify; return https://cafe.example/tappay/return",
        "  oen           merchant_id (path only); notify https://books.example/oen/notify",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
}

#[test]
fn checkmac_prints_the_known_answer() {
    // The first vector of vectors/checkmac.json (Funpoint's own document).
    let fields = [
        "TradeDesc=促銷方案",
        "PaymentType=aio",
        "MerchantTradeDate=2013/03/12 15:30:23",
        "MerchantTradeNo=funpoint20130312153023",
        "MerchantID=2000132",
        "ReturnURL=https://www.funpoint.com.tw/receive.php",
        "ItemName=Apple iphone 7 手機殼",
        "TotalAmount=1000",
        "ChoosePayment=ALL",
        "EncryptType=1",
    ];
    let mut args = vec!["checkmac", "--hash-key", "5294y06JbISpM5x9", "--hash-iv", "v77hoKGq4kWxNNIS"];
    args.extend(fields);
    let o = payrelay(&args, &[]);
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim(), "AA5842FDA7E55ACEB7118D6353E9822CA6D6FF09A0D1FC129A879DD5CAF93266");

    let mut md5 = args.clone();
    md5.insert(1, "--md5");
    let o = payrelay(&md5, &[]);
    assert_eq!(stdout(&o).trim().len(), 32);

    let o = payrelay(&["checkmac", "--hash-key", "k", "--hash-iv", "v", "novalue"], &[]);
    assert_eq!(o.status.code(), Some(1));
}
