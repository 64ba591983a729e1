//! The sandbox Funpoint's ledger: one trade per AioCheckOut form, what the
//! buyer did with it, and the exact fields of each server notification and
//! browser bounce Funpoint sends for it (FP137: ReturnURL, PaymentInfoURL,
//! PeriodReturnURL; providers-query.md §3), signed with the merchant's keys.

use crate::domain::time::taipei;
use crate::domain::{CheckMac, HashAlgorithm, HashKeys};

pub type Fields = Vec<(String, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeState {
    /// The buyer has not paid (yet).
    Unpaid,
    /// An ATM account or CVS code was issued; the money has not come.
    CodeIssued,
    Paid,
    Failed,
}

impl TradeState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unpaid => "unpaid",
            Self::CodeIssued => "code_issued",
            Self::Paid => "paid",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    Atm,
    Cvs,
}

/// An issued ATM account or CVS payment code.
#[derive(Debug, Clone)]
pub struct Code {
    pub kind: CodeKind,
    pub bank: String,
    pub number: String,
    pub expire: String,
}

#[derive(Debug, Clone)]
pub struct Trade {
    pub n: usize,
    /// The checkout form as the shop signed it (without CheckMacValue).
    pub form: Fields,
    pub trade_no: String,
    pub trade_date: String,
    pub state: TradeState,
    pub payment_type: &'static str,
    pub payment_date: String,
    pub code: Option<Code>,
    /// Periods charged so far (a recurring order's TotalSuccessTimes).
    pub periods: u32,
    /// "Lose this notification": paid, and Funpoint never told anyone.
    pub lost: bool,
}

impl Trade {
    pub fn new(n: usize, form: Fields, now_ms: i64) -> Self {
        let stamp = taipei(now_ms);
        let digits: String = stamp.chars().filter(char::is_ascii_digit).skip(2).collect();
        Self {
            n,
            form,
            trade_no: format!("{digits}{n:04}"),
            trade_date: stamp,
            state: TradeState::Unpaid,
            payment_type: "",
            payment_date: String::new(),
            code: None,
            periods: 0,
            lost: false,
        }
    }

    pub fn field(&self, name: &str) -> &str {
        self.form.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    pub fn order_no(&self) -> &str {
        self.field("MerchantTradeNo")
    }

    pub fn is_recurring(&self) -> bool {
        !self.field("PeriodType").is_empty()
    }

    /// What ChoosePayment lets the buyer do on the payment page.
    pub fn offers(&self, method: &str) -> bool {
        let chosen = self.field("ChoosePayment");
        chosen == "ALL" || chosen == method
    }

    fn common(&self, merchant: &str) -> Fields {
        let mut f: Fields = vec![
            ("MerchantID".into(), merchant.into()),
            ("MerchantTradeNo".into(), self.order_no().into()),
            ("StoreID".into(), String::new()),
        ];
        for k in ["CustomField1", "CustomField2", "CustomField3", "CustomField4"] {
            f.push((k.into(), self.field(k).into()));
        }
        f
    }

    /// ReturnURL's notification (also what OrderResultURL gets): the
    /// payment's result.
    pub fn result(&self, merchant: &str, rtn_msg: &str) -> Fields {
        let code = if self.state == TradeState::Paid { "1" } else { "10100058" };
        let mut f = self.common(merchant);
        f.extend([
            ("RtnCode".into(), code.into()),
            ("RtnMsg".into(), rtn_msg.into()),
            ("TradeNo".into(), self.trade_no.clone()),
            ("TradeAmt".into(), self.field("TotalAmount").into()),
            ("PaymentDate".into(), self.payment_date.clone()),
            ("PaymentType".into(), self.payment_type.into()),
            ("PaymentTypeChargeFee".into(), "0".into()),
            ("TradeDate".into(), self.trade_date.clone()),
            ("SimulatePaid".into(), "0".into()),
        ]);
        f
    }

    /// PaymentInfoURL's notification (also what ClientRedirectURL gets).
    pub fn payment_info(&self, merchant: &str) -> Fields {
        let mut f = self.common(merchant);
        let Some(code) = &self.code else { return f };
        let (rtn, msg) = match code.kind {
            CodeKind::Atm => ("2", "Get VirtualAccount Succeeded"),
            CodeKind::Cvs => ("10100073", "Get CVS Code Succeeded."),
        };
        f.extend([
            ("RtnCode".into(), rtn.into()),
            ("RtnMsg".into(), msg.into()),
            ("TradeNo".into(), self.trade_no.clone()),
            ("TradeAmt".into(), self.field("TotalAmount").into()),
            ("PaymentType".into(), self.payment_type.into()),
            ("TradeDate".into(), self.trade_date.clone()),
        ]);
        match code.kind {
            CodeKind::Atm => f.extend([
                ("BankCode".into(), code.bank.clone()),
                ("vAccount".into(), code.number.clone()),
                ("ExpireDate".into(), code.expire.clone()),
            ]),
            CodeKind::Cvs => f.extend([
                ("PaymentNo".into(), code.number.clone()),
                ("ExpireDate".into(), code.expire.clone()),
                ("Barcode1".into(), String::new()),
                ("Barcode2".into(), String::new()),
                ("Barcode3".into(), String::new()),
            ]),
        }
        f
    }

    /// PeriodReturnURL's notification for the latest charged period (no
    /// TradeNo: FP137 p.27).
    pub fn period(&self, merchant: &str, now_ms: i64) -> Fields {
        let mut f = self.common(merchant);
        let amount = self.field("PeriodAmount").to_owned();
        f.extend([
            ("RtnCode".into(), "1".into()),
            ("RtnMsg".into(), "交易成功".into()),
            ("PeriodType".into(), self.field("PeriodType").into()),
            ("Frequency".into(), self.field("Frequency").into()),
            ("ExecTimes".into(), self.field("ExecTimes").into()),
            ("Amount".into(), amount.clone()),
            ("Gwsr".into(), self.gwsr(self.periods).to_string()),
            ("ProcessDate".into(), taipei(now_ms)),
            ("AuthCode".into(), format!("77{:04}", self.periods)),
            ("FirstAuthAmount".into(), amount),
            ("TotalSuccessTimes".into(), self.periods.to_string()),
        ]);
        f
    }

    /// Gateway serial of period `k`.
    pub fn gwsr(&self, k: u32) -> u64 {
        10_000_000 + self.n as u64 * 1000 + u64::from(k)
    }

    /// QueryTradeInfo/V5's answer fields (before the MAC).
    pub fn trade_info(&self, merchant: &str) -> Fields {
        let status = match self.state {
            TradeState::Paid => "1",
            _ => "0",
        };
        vec![
            ("MerchantID".into(), merchant.into()),
            ("MerchantTradeNo".into(), self.order_no().into()),
            ("StoreID".into(), String::new()),
            ("TradeNo".into(), self.trade_no.clone()),
            ("TradeAmt".into(), self.field("TotalAmount").into()),
            ("PaymentDate".into(), self.payment_date.clone()),
            ("PaymentType".into(), self.payment_type.into()),
            ("HandlingCharge".into(), "0".into()),
            ("PaymentTypeChargeFee".into(), "0".into()),
            ("TradeDate".into(), self.trade_date.clone()),
            ("TradeStatus".into(), status.into()),
            ("ItemName".into(), self.field("ItemName").into()),
            ("CustomField1".into(), self.field("CustomField1").into()),
            ("CustomField2".into(), self.field("CustomField2").into()),
            ("CustomField3".into(), self.field("CustomField3").into()),
            ("CustomField4".into(), self.field("CustomField4").into()),
        ]
    }
}

/// `fields` with their CheckMacValue appended (SHA-256, EncryptType 1).
pub fn signed(mut fields: Fields, keys: &HashKeys) -> Fields {
    let mac = CheckMac::compute(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())), keys, HashAlgorithm::Sha256);
    fields.push(("CheckMacValue".into(), mac.as_str().to_owned()));
    fields
}

/// A forgery of `fields`: the amount raised to 1 and the CheckMacValue made
/// without the merchant's keys, as someone who found the ReturnURL would.
pub fn forged(fields: &Fields) -> Fields {
    let mut f: Fields = fields.iter().filter(|(k, _)| k != "CheckMacValue").cloned().collect();
    for (k, v) in &mut f {
        if k == "TradeAmt" {
            *v = "1".into();
        }
    }
    let guess = HashKeys {
        key: crate::domain::Secret::new("guessedguessedgu"),
        iv: crate::domain::Secret::new("guessedguessedgu"),
    };
    signed(f, &guess)
}

/// Funpoint changes `RtnMsg` on a resend (交易成功 → paid), and with it the
/// MAC: the gateway's dedup must see through it (SPEC §3.3 step 5).
pub fn resent(fields: &Fields, keys: &HashKeys) -> Fields {
    let f: Fields = fields
        .iter()
        .filter(|(k, _)| k != "CheckMacValue")
        .map(
            |(k, v)| {
                if k == "RtnMsg" && v == "交易成功" { (k.clone(), "paid".into()) } else { (k.clone(), v.clone()) }
            },
        )
        .collect();
    signed(f, keys)
}
