//! The lean GetRecords path (issue #24): the SDK still sends the call, signs it,
//! retries and classifies its errors, but a successful answer's records are read from
//! the raw body by [`raw_page`] (one buffer for the page's data, two fields a record)
//! instead of the SDK's response model, which was the largest share of the consumer's
//! CPU per plain trade. The SDK then parses the body with its `Records` emptied, so
//! `NextShardIterator`, `MillisBehindLatest`, `ChildShards` and every error answer
//! (throttling, expired iterator, …) take exactly the SDK's path as before.
//!
//! Mechanism: an interceptor puts a deserializer in the call's own config layer that
//! wraps the SDK's GetRecords deserializer (taken from the operation's runtime plugin)
//! and, for a 2xx body [`raw_page`] can read, leaves the records in a [`Slot`] the
//! reader takes after `send()`. A body it cannot read goes to the SDK unchanged, whose
//! records the reader then uses.

use std::sync::{Arc, Mutex, OnceLock};

use aws_sdk_kinesis::operation::get_records::GetRecords;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, Error, Output,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, OrchestratorError};
use aws_smithy_runtime_api::client::runtime_plugin::RuntimePlugin;
use aws_smithy_runtime_api::client::ser_de::{DeserializeResponse, SharedResponseDeserializer};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{ConfigBag, FrozenLayer};

use super::raw_page::{self, RawPage};

/// The records of the last answer read the lean way, for the reader to take.
#[derive(Debug, Clone, Default)]
pub struct Slot(Arc<Mutex<Option<RawPage>>>);

impl Slot {
    pub fn take(&self) -> Option<RawPage> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn put(&self, page: RawPage) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(page);
    }
}

/// Installs the lean deserializer for one GetRecords call.
#[derive(Debug, Clone)]
pub struct LeanRecords {
    slot: Slot,
}

impl LeanRecords {
    pub fn new(slot: Slot) -> Self {
        LeanRecords { slot }
    }
}

impl Intercept for LeanRecords {
    fn name(&self) -> &'static str {
        "LeanGetRecords"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let sdk = sdk_layer();
        if sdk.load::<SharedResponseDeserializer>().is_none() {
            return Err("the SDK's GetRecords plugin has no response deserializer".into());
        }
        cfg.interceptor_state()
            .store_put(SharedResponseDeserializer::new(LeanDeserializer {
                sdk: sdk.clone(),
                slot: self.slot.clone(),
            }));
        Ok(())
    }
}

/// The SDK's own GetRecords config layer (built once), which holds its deserializer.
fn sdk_layer() -> &'static FrozenLayer {
    static LAYER: OnceLock<FrozenLayer> = OnceLock::new();
    LAYER.get_or_init(|| {
        GetRecords::new()
            .config()
            .expect("the GetRecords runtime plugin has a config layer")
    })
}

#[derive(Debug)]
struct LeanDeserializer {
    /// Holds the SDK's deserializer (checked present when installed).
    sdk: FrozenLayer,
    slot: Slot,
}

impl LeanDeserializer {
    fn inner(&self) -> &SharedResponseDeserializer {
        self.sdk
            .load::<SharedResponseDeserializer>()
            .expect("checked when installed")
    }
}

impl DeserializeResponse for LeanDeserializer {
    fn deserialize_streaming_with_config(
        &self,
        response: &mut HttpResponse,
        cfg: &ConfigBag,
    ) -> Option<Result<Output, OrchestratorError<Error>>> {
        self.inner()
            .deserialize_streaming_with_config(response, cfg)
    }

    fn deserialize_nonstreaming_with_config(
        &self,
        response: &HttpResponse,
        cfg: &ConfigBag,
    ) -> Result<Output, OrchestratorError<Error>> {
        let read = response
            .status()
            .is_success()
            .then(|| response.body().bytes())
            .flatten()
            .and_then(|body| raw_page::parse(body).ok());
        let Some((page, stripped)) = read else {
            return self
                .inner()
                .deserialize_nonstreaming_with_config(response, cfg);
        };
        let mut lean = HttpResponse::new(response.status(), SdkBody::from(stripped));
        *lean.headers_mut() = response.headers().clone();
        let out = self
            .inner()
            .deserialize_nonstreaming_with_config(&lean, cfg);
        if out.is_ok() {
            self.slot.put(page);
        }
        out
    }
}
