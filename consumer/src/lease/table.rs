//! The DynamoDB seam: the KCL 2.x lease table. Every lease write is a conditional
//! UpdateItem on the last counter seen that sets it +1 (the fencing token); rows are
//! only ever created with a put-if-absent, so attributes written by other KCL versions
//! survive our updates.

use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;

use super::error::LeaseError;
use super::item::{is_lease_item, parse_item, to_item, Item};
use super::model::{attr, Checkpoint, Lease, SHARD_END};

/// Whether `ensure_table` found the table or made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableState {
    Existed,
    Created,
}

/// Outcome of a conditional lease write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Written; the lease's counter is now this value.
    Done { counter: u64 },
    /// The row no longer matched (counter moved, owner changed, or row gone).
    Conflict,
}

#[derive(Clone, Debug)]
pub struct LeaseTable {
    client: Client,
    name: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn count(op: &'static str) {
    metrics::counter!("tradeflow_consumer_dynamodb_requests_total", "op" => op).increment(1);
}

impl LeaseTable {
    pub fn new(client: Client, table_name: impl Into<String>) -> Self {
        LeaseTable {
            client,
            name: table_name.into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates the table (leaseKey S HASH, PAY_PER_REQUEST) if missing and waits until
    /// it is ACTIVE.
    pub async fn ensure_table(&self) -> Result<TableState, LeaseError> {
        let state = match self.describe_status().await? {
            Some(_) => TableState::Existed,
            None => {
                count("create_table");
                let res = self
                    .client
                    .create_table()
                    .table_name(&self.name)
                    .billing_mode(BillingMode::PayPerRequest)
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name(attr::LEASE_KEY)
                            .key_type(KeyType::Hash)
                            .build()
                            .expect("key schema has its required fields"),
                    )
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name(attr::LEASE_KEY)
                            .attribute_type(ScalarAttributeType::S)
                            .build()
                            .expect("attribute definition has its required fields"),
                    )
                    .send()
                    .await;
                match res {
                    Ok(_) => TableState::Created,
                    // Another worker created it at the same moment.
                    Err(SdkError::ServiceError(se)) if se.err().is_resource_in_use_exception() => {
                        TableState::Existed
                    }
                    Err(e) => return Err(LeaseError::dynamo("create_table", &self.name, &e)),
                }
            }
        };
        for _ in 0..600 {
            if self.describe_status().await? == Some(TableStatus::Active) {
                return Ok(state);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(LeaseError::TableNotActive {
            table: self.name.clone(),
        })
    }

    async fn describe_status(&self) -> Result<Option<TableStatus>, LeaseError> {
        count("describe_table");
        match self
            .client
            .describe_table()
            .table_name(&self.name)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.table()
                    .and_then(|t| t.table_status().cloned())
                    .unwrap_or(TableStatus::Creating),
            )),
            Err(SdkError::ServiceError(se)) if se.err().is_resource_not_found_exception() => {
                Ok(None)
            }
            Err(e) => Err(LeaseError::dynamo("describe_table", &self.name, &e)),
        }
    }

    /// Every lease row (consistent, paginated scan). Rows we cannot read are logged,
    /// counted and left out, never taken. Rows that are not leases (KCL 3.5's worker
    /// metrics and coordinator state, by `entityType`) are left out and left alone.
    pub async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        let mut others = 0usize;
        loop {
            count("scan");
            let page = self
                .client
                .scan()
                .table_name(&self.name)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| LeaseError::dynamo("scan", &self.name, &e))?;
            for item in page.items() {
                if !is_lease_item(item) {
                    others += 1;
                    continue;
                }
                match parse_item(item) {
                    Ok(l) => out.push(l),
                    Err(reason) => {
                        metrics::counter!("tradeflow_consumer_lease_rows_unreadable_total")
                            .increment(1);
                        tracing::warn!(table = %self.name, %reason, "unreadable lease row skipped");
                    }
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        metrics::gauge!("tradeflow_consumer_lease_table_other_rows").set(others as f64);
        Ok(out)
    }

    /// One row, read consistently.
    pub async fn get(&self, shard_id: &str) -> Result<Option<Lease>, LeaseError> {
        count("get_item");
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .key(attr::LEASE_KEY, s(shard_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| LeaseError::dynamo("get_item", &self.name, &e))?;
        Ok(out
            .item()
            .filter(|i| is_lease_item(i))
            .and_then(|i| parse_item(i).ok()))
    }

    /// Creates a free lease row unless one exists. Returns whether it was created.
    pub async fn create_if_absent(&self, lease: &Lease) -> Result<bool, LeaseError> {
        count("put_item");
        let res = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(to_item(lease)))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", attr::LEASE_KEY)
            .send()
            .await;
        condition_held("put_item", &self.name, res)
    }

    /// Takes (or steals) a lease: owner := me, counter +1, owner switches +1, if the
    /// counter is still the one seen.
    pub async fn take(&self, shard_id: &str, expected: u64, me: &str) -> Result<Write, LeaseError> {
        let req = self
            .update(shard_id, expected)
            .update_expression("SET #o = :me, #c = :next ADD #sw :one")
            .condition_expression("#c = :expected")
            .expression_attribute_names("#o", attr::LEASE_OWNER)
            .expression_attribute_names("#sw", attr::OWNER_SWITCHES)
            .expression_attribute_values(":me", s(me))
            .expression_attribute_values(":one", n(1));
        self.conditional("take", shard_id, expected, req, |l| l.is_owned_by(me))
            .await
    }

    /// Renews a held lease: counter +1 if still mine at the counter seen.
    pub async fn renew(
        &self,
        shard_id: &str,
        expected: u64,
        me: &str,
    ) -> Result<Write, LeaseError> {
        let renewed = |l: &Lease| l.is_owned_by(me);
        let expr = "SET #c = :next";
        self.holder_write("renew", shard_id, expected, me, expr, renewed)
            .await
    }

    /// Writes a checkpoint (fenced on owner and counter), resets the owner-switch count
    /// and clears any two-phase pending checkpoint. `children` (non-empty) are added to
    /// `childShardIds` in the same write.
    pub async fn checkpoint(
        &self,
        shard_id: &str,
        expected: u64,
        me: &str,
        cp: &Checkpoint,
        children: &[String],
    ) -> Result<Write, LeaseError> {
        let (value, sub) = cp.to_attr();
        let mut expr = "SET #c = :next, #cp = :cp, #sub = :sub, #sw = :zero".to_string();
        let mut req = self.owned_update(shard_id, expected, me);
        if !children.is_empty() {
            expr.push_str(" ADD #children :children");
            req = req
                .expression_attribute_names("#children", attr::CHILD_SHARD_IDS)
                .expression_attribute_values(":children", AttributeValue::Ss(children.to_vec()));
        }
        expr.push_str(" REMOVE #p, #psub, #pstate");
        let req = req
            .update_expression(expr)
            .expression_attribute_names("#cp", attr::CHECKPOINT)
            .expression_attribute_names("#sub", attr::CHECKPOINT_SUB)
            .expression_attribute_names("#sw", attr::OWNER_SWITCHES)
            .expression_attribute_names("#p", attr::PENDING_CHECKPOINT)
            .expression_attribute_names("#psub", attr::PENDING_CHECKPOINT_SUB)
            .expression_attribute_names("#pstate", attr::PENDING_CHECKPOINT_STATE)
            .expression_attribute_values(":cp", s(value.clone()))
            .expression_attribute_values(":sub", n(sub))
            .expression_attribute_values(":zero", n(0));
        self.conditional("checkpoint", shard_id, expected, req, |l| {
            l.is_owned_by(me) && l.checkpoint.as_deref() == Some(value.as_str())
        })
        .await
    }

    /// Gives a lease up: removes the owner (counter +1) if still mine at the counter
    /// seen, so any worker may take it on its next pass.
    pub async fn release(
        &self,
        shard_id: &str,
        expected: u64,
        me: &str,
    ) -> Result<Write, LeaseError> {
        let released = |l: &Lease| l.owner.is_none();
        let expr = "SET #c = :next REMOVE #o";
        self.holder_write("release", shard_id, expected, me, expr, released)
            .await
    }

    /// Adds child shard ids to a parent row (a set union: no counter needed, and it does
    /// not disturb the owner's fenced writes). False if the row does not exist.
    pub async fn add_children(
        &self,
        shard_id: &str,
        children: &[String],
    ) -> Result<bool, LeaseError> {
        if children.is_empty() {
            return Ok(true);
        }
        count("update_item");
        let res = self
            .client
            .update_item()
            .table_name(&self.name)
            .key(attr::LEASE_KEY, s(shard_id))
            .update_expression("ADD #children :children")
            .condition_expression("attribute_exists(#k)")
            .expression_attribute_names("#children", attr::CHILD_SHARD_IDS)
            .expression_attribute_names("#k", attr::LEASE_KEY)
            .expression_attribute_values(":children", AttributeValue::Ss(children.to_vec()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(LeaseError::dynamo("update_item", &self.name, &e)),
        }
    }

    /// Deletes a lease row whatever it holds (rows of a stream that no longer exists:
    /// see `crate::stream_identity`). Rows that are not leases are never passed here.
    pub async fn delete(&self, shard_id: &str) -> Result<(), LeaseError> {
        let res = self.delete_item(shard_id).send().await;
        condition_held("delete_item", &self.name, res).map(|_| ())
    }

    /// Deletes a finished row if it is still SHARD_END at the counter seen. False when
    /// it changed or is already gone (another worker's sync got there first).
    pub async fn delete_finished(&self, shard_id: &str, expected: u64) -> Result<bool, LeaseError> {
        let res = self
            .delete_item(shard_id)
            .condition_expression("#c = :expected AND #k = :end")
            .expression_attribute_names("#c", attr::LEASE_COUNTER)
            .expression_attribute_names("#k", attr::CHECKPOINT)
            .expression_attribute_values(":expected", n(expected))
            .expression_attribute_values(":end", s(SHARD_END))
            .send()
            .await;
        condition_held("delete_item", &self.name, res)
    }

    /// A DeleteItem of one row (counted).
    fn delete_item(
        &self,
        shard_id: &str,
    ) -> aws_sdk_dynamodb::operation::delete_item::builders::DeleteItemFluentBuilder {
        count("delete_item");
        self.client
            .delete_item()
            .table_name(&self.name)
            .key(attr::LEASE_KEY, s(shard_id))
    }

    fn update(
        &self,
        shard_id: &str,
        expected: u64,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.name)
            .key(attr::LEASE_KEY, s(shard_id))
            .expression_attribute_names("#c", attr::LEASE_COUNTER)
            .expression_attribute_values(":expected", n(expected))
            .expression_attribute_values(":next", n(expected + 1))
    }

    /// An update fenced on both the counter seen and `me` still being the owner: the
    /// condition of every write a lease holder makes (renew, checkpoint, release).
    fn owned_update(
        &self,
        shard_id: &str,
        expected: u64,
        me: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.update(shard_id, expected)
            .condition_expression("#c = :expected AND #o = :me")
            .expression_attribute_names("#o", attr::LEASE_OWNER)
            .expression_attribute_values(":me", s(me))
    }

    /// A holder's write that only moves the counter and the owner (renew, release):
    /// `expr` under the holder's fence; `applied` tells a lost answer from a conflict.
    async fn holder_write(
        &self,
        op: &'static str,
        shard_id: &str,
        expected: u64,
        me: &str,
        expr: &'static str,
        applied: impl Fn(&Lease) -> bool,
    ) -> Result<Write, LeaseError> {
        let req = self
            .owned_update(shard_id, expected, me)
            .update_expression(expr);
        self.conditional(op, shard_id, expected, req, applied).await
    }

    /// Sends a conditional update. On a condition failure, reads the row back: if it is
    /// exactly what our write would have left (an SDK retry after a lost response), the
    /// write did succeed; otherwise it is a real conflict.
    async fn conditional(
        &self,
        op: &'static str,
        shard_id: &str,
        expected: u64,
        req: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        applied: impl Fn(&Lease) -> bool,
    ) -> Result<Write, LeaseError> {
        count("update_item");
        match req.send().await {
            Ok(_) => Ok(Write::Done {
                counter: expected + 1,
            }),
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => {
                match self.get(shard_id).await? {
                    Some(l) if l.counter == expected + 1 && applied(&l) => Ok(Write::Done {
                        counter: expected + 1,
                    }),
                    _ => Ok(Write::Conflict),
                }
            }
            Err(e) => Err(LeaseError::dynamo(op, &self.name, &e)),
        }
    }
}

/// A conditional write's answer: done (true), condition not met (false), or an error.
fn condition_held<O, E, R>(
    op: &'static str,
    table: &str,
    res: Result<O, SdkError<E, R>>,
) -> Result<bool, LeaseError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match res {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(se))
            if se.err().code() == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(e) => Err(LeaseError::dynamo(op, table, &e)),
    }
}
