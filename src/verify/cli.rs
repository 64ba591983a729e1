//! `payrelay verify PROVIDER --tenant ID KEY=VALUE…` (SPEC §8): asks the
//! provider now about a callback with those fields, with the tenant's
//! credentials, and prints the outcome and what the gateway would decide.
//! Nothing is stored or delivered.

use std::process::ExitCode;

use crate::cli::VerifyArgs;
use crate::routing::Provider;

/// `payrelay verify`: exit 0 when the provider confirms the callback.
pub fn command(args: &VerifyArgs) -> ExitCode {
    let config = match crate::cli::load_or_report(&args.config.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (Some(provider), Some(tenant)) = (Provider::parse(&args.provider), config.table.tenant(&args.tenant)) else {
        eprintln!("unknown provider {:?} or tenant {:?}", args.provider, args.tenant);
        return ExitCode::FAILURE;
    };
    let fields = match crate::cli::split_fields(&args.fields) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let (body, content_type) = match provider {
        Provider::Funpoint => (crate::form::encode(fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))), None),
        _ => {
            let object: serde_json::Map<String, serde_json::Value> =
                fields.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
            (serde_json::Value::Object(object).to_string(), Some("application/json"))
        }
    };
    let policy = crate::verify::policy(tenant, provider);
    if !policy.queries() {
        println!("note: tenant {} does not query {} (verify = \"none\"); asking anyway", tenant.id, provider);
    }
    let asked = async {
        let client = crate::startup::http_client_via(config.server.outbound_proxy.as_ref())?;
        anyhow::Ok(crate::verify::query(&client, &config, tenant, provider, body.as_bytes(), content_type).await)
    };
    let verdict = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(asked))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("payrelay: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let then = crate::verify::next(policy, &verdict, 0, &config.delivery.retry, crate::store::now_ms());
    println!("outcome: {}\ndetail:  {}\ndecision: {then:?}", verdict.verified.as_str(), verdict.detail);
    if verdict.verified == crate::store::Verified::Confirmed { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
