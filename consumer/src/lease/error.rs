//! Errors of the lease layer. "Another worker holds it" is not an error for takes (the
//! plan just moves on); for a checkpoint it is [`LeaseError::Lost`]: the caller must
//! stop and rely on its fenced, idempotent sink.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The lease moved to another worker (or was released): the write was fenced off.
    #[error("lease on shard {shard} is no longer held by this worker")]
    Lost { shard: String },
    /// This worker never held (or already gave up) the lease.
    #[error("this worker does not hold a lease on shard {shard}")]
    NotHeld { shard: String },
    #[error("DynamoDB {op} on table {table} failed: {message}")]
    Dynamo {
        op: &'static str,
        table: String,
        message: String,
        retryable: bool,
    },
    #[error("lease table {table} did not become ACTIVE in time")]
    TableNotActive { table: String },
    #[error("lease coordinator has stopped")]
    Stopped,
}

impl LeaseError {
    /// Worth retrying the same call later (throttling, timeouts, 5xx).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LeaseError::Dynamo {
                retryable: true,
                ..
            }
        )
    }

    pub(crate) fn dynamo<E, R>(op: &'static str, table: &str, err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let retryable = match err {
            SdkError::ServiceError(se) => matches!(
                se.err().code(),
                Some(
                    "ProvisionedThroughputExceededException"
                        | "ThrottlingException"
                        | "RequestLimitExceeded"
                        | "InternalServerError"
                        | "ServiceUnavailable"
                )
            ),
            SdkError::ConstructionFailure(_) => false,
            _ => true,
        };
        let message = match err {
            SdkError::ServiceError(se) => format!(
                "{}: {}",
                se.err().code().unwrap_or("unknown"),
                se.err().message().unwrap_or("")
            ),
            other => format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(other)),
        };
        LeaseError::Dynamo {
            op,
            table: table.to_string(),
            message,
            retryable,
        }
    }
}
