//! The registry of enabled payment channels.
//!
//! Everything channel-specific lives behind `PaymentChannel`; a channel is one entry in
//! [`ChannelRegistry::from_settings`], nothing else in the gateway.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use paywire_channels::alipay::{Alipay, AlipayConfig};
use paywire_channels::wechat::{WechatPay, WechatPayConfig, WechatPayKeyring};
use paywire_channels::wechat_v2::{WechatPayV2, WechatPayV2Config};
use paywire_channels::{Metered, PaymentChannel, keys};
use paywire_domain::PayChannel;

use crate::{AlipaySettings, Settings, WechatSettings, WechatV2Settings, timeout};

#[derive(Debug, Default, Clone)]
pub struct ChannelRegistry {
    channels: HashMap<PayChannel, Arc<dyn PaymentChannel>>,
}

impl ChannelRegistry {
    /// Builds every enabled channel. `own_callback_base` (`http://host:port/api/callback`)
    /// supplies notify URLs that are left empty in the settings.
    pub fn from_settings(settings: &Settings, own_callback_base: &str) -> anyhow::Result<Self> {
        let mut registry = Self::default();
        if settings.wechat.enabled {
            let wechat = wechat(&settings.wechat, own_callback_base)
                .context("configuring the WeChat Pay channel")?;
            registry.insert(Arc::new(Metered(wechat)));
        }
        if settings.wechat_v2.enabled {
            let wechat_v2 = wechat_v2(&settings.wechat_v2, own_callback_base)
                .context("configuring the WeChat Pay API v2 channel")?;
            registry.insert(Arc::new(Metered(wechat_v2)));
        }
        if settings.alipay.enabled {
            let alipay = alipay(&settings.alipay, own_callback_base)
                .context("configuring the Alipay channel")?;
            registry.insert(Arc::new(Metered(alipay)));
        }
        Ok(registry)
    }

    pub fn insert(&mut self, channel: Arc<dyn PaymentChannel>) {
        self.channels.insert(channel.channel(), channel);
    }

    pub fn get(&self, channel: PayChannel) -> Option<&Arc<dyn PaymentChannel>> {
        self.channels.get(&channel)
    }

    pub fn enabled(&self) -> impl Iterator<Item = PayChannel> + '_ {
        self.channels.keys().copied()
    }
}

fn wechat(settings: &WechatSettings, own_callback_base: &str) -> anyhow::Result<WechatPay> {
    let merchant_private_key = key(
        "merchant key",
        &settings.merchant_private_key_path,
        keys::private_key_from_file,
    )?;
    let wechatpay_public_key = key(
        "WeChat Pay key",
        &settings.wechatpay_public_key_path,
        keys::public_key_from_file,
    )?;
    let keyring = WechatPayKeyring::new().with_key(
        settings.wechatpay_public_key_id.clone(),
        wechatpay_public_key,
    );
    let config = WechatPayConfig {
        api_base: settings.api_base.clone(),
        mchid: settings.mchid.clone(),
        appid: settings.appid.clone(),
        merchant_serial_no: settings.merchant_serial_no.clone(),
        merchant_private_key,
        apiv3_key: settings.apiv3_key.clone(),
        keyring,
        // Refund results come to the same callback route (told apart by event type).
        refund_notify_url: None,
        notify_url: notify_url(&settings.notify_url, own_callback_base, PayChannel::Wechat),
        timeout: timeout(settings.timeout_ms),
    };
    Ok(WechatPay::new(config)?)
}

fn wechat_v2(settings: &WechatV2Settings, own_callback_base: &str) -> anyhow::Result<WechatPayV2> {
    let identity = std::fs::read_to_string(&settings.client_identity_path)
        .with_context(|| format!("client certificate {}", settings.client_identity_path))?;
    let extra_root_ca_pem = if settings.extra_root_ca_path.is_empty() {
        None
    } else {
        Some(
            std::fs::read(&settings.extra_root_ca_path)
                .with_context(|| format!("extra root CA {}", settings.extra_root_ca_path))?,
        )
    };
    let config = WechatPayV2Config {
        api_base: settings.api_base.clone(),
        secapi_base: settings.secapi_base.clone(),
        appid: settings.appid.clone(),
        mch_id: settings.mch_id.clone(),
        api_key: settings.api_key.clone(),
        sign_type: settings.sign_type,
        client_identity_pem: identity.into(),
        extra_root_ca_pem,
        client_ip: settings.client_ip.clone(),
        notify_url: notify_url(
            &settings.notify_url,
            own_callback_base,
            PayChannel::WechatV2,
        ),
        timeout: timeout(settings.timeout_ms),
    };
    Ok(WechatPayV2::new(config)?)
}

fn alipay(settings: &AlipaySettings, own_callback_base: &str) -> anyhow::Result<Alipay> {
    let config = AlipayConfig {
        gateway_url: settings.gateway_url.clone(),
        app_id: settings.app_id.clone(),
        seller_id: settings.seller_id.clone(),
        app_private_key: key(
            "app private key",
            &settings.app_private_key_path,
            keys::private_key_from_file,
        )?,
        alipay_public_key: key(
            "Alipay public key",
            &settings.alipay_public_key_path,
            keys::public_key_from_file,
        )?,
        notify_url: notify_url(&settings.notify_url, own_callback_base, PayChannel::Alipay),
        timeout: timeout(settings.timeout_ms),
    };
    Ok(Alipay::new(config)?)
}

/// A channel key read from its PEM file; the error names which key and where.
fn key<K>(
    what: &str,
    path: &str,
    read: fn(String) -> Result<K, paywire_channels::CryptoError>,
) -> anyhow::Result<K> {
    read(path.to_owned()).with_context(|| format!("{what} {path}"))
}

/// Where the channel posts its callbacks: the configured URL, else this gateway's own
/// callback route for the channel (`<own_callback_base>/<channel>`).
fn notify_url(configured: &str, own_callback_base: &str, channel: PayChannel) -> String {
    if configured.is_empty() {
        format!("{own_callback_base}/{channel}")
    } else {
        configured.to_owned()
    }
}
