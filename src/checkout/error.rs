//! The errors the browser-facing endpoints answer with: each has its public
//! code, HTTP status and message. The cause stays in the log.

use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Field number `n` (1 = foran … 5 = domain) is missing or empty.
    #[error("checkout field {0} is missing or empty")]
    MissingField(usize),
    #[error("a checkout field is longer than 512 bytes or not UTF-8")]
    FieldTooLong,
    #[error("unknown domain code")]
    UnknownDomain,
    #[error("origin {0:?} may not start a checkout for this tenant")]
    OriginNotAllowed(String),
    #[error("tenant API failed")]
    TenantApi(#[from] super::TenantApiError),
    #[error("payment_url origin {0:?} is not in providers.funpoint.payment_origins")]
    PaymentOrigin(String),
    #[error("no tenant for this order number")]
    UnknownOrder,
    #[error("CheckMacValue does not verify")]
    BadCheckMac,
    #[error("no sinopac tenant for this ShopNo")]
    UnknownShop,
    #[error("no tenant of this name takes this provider's returns")]
    UnknownTenant,
    #[error("request body larger than server.max_body_bytes")]
    BodyTooLarge,
    #[error("request body could not be read")]
    BodyUnreadable,
    #[error("a field is named twice, or spelt unlike Funpoint's own name for it")]
    RespelledField,
}

impl GatewayError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingField(1) => "8000201",
            Self::MissingField(2) => "8000202",
            Self::MissingField(3) => "8000203",
            Self::MissingField(4) => "8000204",
            Self::MissingField(_) => "8000205",
            Self::UnknownDomain => "8000206",
            Self::TenantApi(_) => "8000207",
            Self::PaymentOrigin(_) => "8000208",
            Self::OriginNotAllowed(_) => "8000210",
            Self::FieldTooLong => "8000211",
            Self::UnknownOrder => "8000212",
            Self::BadCheckMac => "8000213",
            Self::BodyTooLarge => "8000214",
            Self::BodyUnreadable => "8000215",
            Self::UnknownShop => "8000216",
            Self::UnknownTenant => "8000217",
            Self::RespelledField => "8000218",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::TenantApi(_) | Self::PaymentOrigin(_) => StatusCode::BAD_GATEWAY,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnknownTenant => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// What the buyer sees. The five field errors keep the PHP original's
    /// wording; the others say what happened, with the code.
    pub fn message(&self) -> String {
        let what = match self {
            Self::MissingField(_) => "伺服器資料錯誤",
            Self::FieldTooLong => "資料欄位過長或格式錯誤",
            Self::UnknownDomain => "未知的商店代碼",
            Self::OriginNotAllowed(_) => "此網站不可發起這家商店的付款",
            Self::TenantApi(_) => "商店的金流服務暫時無法使用，請稍後再試",
            Self::PaymentOrigin(_) => "付款網址不在允許的清單內",
            Self::UnknownOrder => "找不到這筆訂單所屬的商店",
            Self::BadCheckMac => "付款結果的檢查碼錯誤",
            Self::BodyTooLarge => "送出的資料過大",
            Self::BodyUnreadable => "送出的資料無法讀取",
            Self::UnknownShop => "找不到這個商店代號所屬的商店",
            Self::UnknownTenant => "找不到這家商店",
            Self::RespelledField => "付款結果的欄位重複或名稱不符",
        };
        format!("{what}-{}。", self.code())
    }
}
