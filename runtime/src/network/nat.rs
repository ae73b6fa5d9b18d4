//! NAT and port forwarding in our own nftables table, `inet isocheck`.
//! Every change is one JSON batch applied by one `nft -j -f -` process,
//! started from a thread inside the host namespace (a child inherits the
//! forking thread's namespace). No other table is read or changed.
//!
//! How DNAT finds the table: every batch begins with idempotent `add table`
//! and `add chain` commands, so `attach` can publish ports whether or not
//! `Nat::enable` ran first. `Nat::delete` (or `cleanup`) deletes the whole
//! table, DNAT rules included; `VethAttachment::detach` deletes just its own
//! rules by handle (run it before `Nat::delete`, or its deletes fail and are
//! reported).

use super::{Netns, NetworkError, TeardownErrors};
use ipnet::Ipv4Net;
use nftables::batch::Batch;
use nftables::expr::{
    Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload, PayloadField,
    Prefix,
};
use nftables::helper;
use nftables::schema::{Chain, NfCmd, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{Match, NATFamily, Operator, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use std::borrow::Cow;
use std::collections::HashSet;
use std::net::Ipv4Addr;

/// Our table's name (family inet).
pub const TABLE: &str = "isocheck";
const POSTROUTING: &str = "postrouting";
const PREROUTING: &str = "prerouting";
const OUTPUT: &str = "output";

/// Masquerade for one subnet out of one uplink, in the host namespace.
#[derive(Debug)]
pub struct Nat {
    host: Netns,
    subnet: Ipv4Net,
    uplink: String,
    deleted: bool,
}

/// A DNAT rule we added, found again by its handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedRule {
    pub chain: String,
    pub handle: u32,
}

impl Nat {
    /// Adds the table, the nat chains, and `ip saddr SUBNET oifname UPLINK
    /// masquerade`, in one batch.
    pub fn enable(host: &Netns, subnet: Ipv4Net, uplink: &str) -> Result<Nat, NetworkError> {
        let batch = masquerade_batch(subnet.trunc(), uplink);
        apply(host, "enable masquerade", &batch)?;
        Ok(Nat {
            host: host.try_clone()?,
            subnet: subnet.trunc(),
            uplink: uplink.to_string(),
            deleted: false,
        })
    }

    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    pub fn uplink(&self) -> &str {
        &self.uplink
    }

    /// Deletes the whole `inet isocheck` table (DNAT rules too).
    pub fn delete(mut self) -> Result<(), TeardownErrors> {
        self.deleted = true;
        delete_table(&self.host).map_err(|e| TeardownErrors(vec![e]))
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        if !self.deleted {
            if let Err(e) = delete_table(&self.host) {
                tracing::warn!(error = %e, "dropping Nat: deleting table inet isocheck failed");
            }
        }
    }
}

fn table() -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: TABLE.into(),
        handle: None,
    }
}

fn nat_chain(name: &'static str, hook: NfHook, prio: i32) -> Chain<'static> {
    Chain {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: name.into(),
        _type: Some(NfChainType::NAT),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }
}

fn rule(
    chain: &'static str,
    expr: Vec<Statement<'static>>,
    comment: Option<String>,
) -> Rule<'static> {
    Rule {
        family: NfFamily::INet,
        table: TABLE.into(),
        chain: chain.into(),
        expr: Cow::Owned(expr),
        handle: None,
        index: None,
        comment: comment.map(Cow::Owned),
    }
}

fn equals(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn field(protocol: &'static str, name: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: name.into(),
        },
    )))
}

/// The table and its chains; `add` leaves existing ones as they are.
fn skeleton(batch: &mut Batch<'static>) {
    batch.add(NfListObject::Table(table()));
    // dstnat (-100) before routing; srcnat (100) after it.
    batch.add(NfListObject::Chain(nat_chain(
        PREROUTING,
        NfHook::Prerouting,
        -100,
    )));
    batch.add(NfListObject::Chain(nat_chain(OUTPUT, NfHook::Output, -100)));
    batch.add(NfListObject::Chain(nat_chain(
        POSTROUTING,
        NfHook::Postrouting,
        100,
    )));
}

/// `ip saddr SUBNET oifname UPLINK masquerade` with the skeleton before it.
pub(crate) fn masquerade_batch(subnet: Ipv4Net, uplink: &str) -> Nftables<'static> {
    let mut batch = Batch::new();
    skeleton(&mut batch);
    batch.add(NfListObject::Rule(rule(
        POSTROUTING,
        vec![
            equals(
                field("ip", "saddr"),
                Expression::Named(NamedExpression::Prefix(Prefix {
                    addr: Box::new(Expression::String(subnet.network().to_string().into())),
                    len: u32::from(subnet.prefix_len()),
                })),
            ),
            equals(
                Expression::Named(NamedExpression::Meta(Meta {
                    key: MetaKey::Oifname,
                })),
                Expression::String(uplink.to_string().into()),
            ),
            Statement::Masquerade(None),
        ],
        Some(format!("isocheck masquerade {subnet}")),
    )));
    batch.to_nftables()
}

/// One forward: packets to a local address of the host on TCP `host_port`
/// go to `container:container_port`. `fib daddr type local` keeps traffic
/// between containers (which crosses prerouting when br_netfilter is on)
/// from being caught by the rule.
fn dnat_rule(
    chain: &'static str,
    container: Ipv4Addr,
    host_port: u16,
    container_port: u16,
    comment: &str,
) -> Rule<'static> {
    let mut flags = HashSet::new();
    flags.insert(FibFlag::Daddr);
    rule(
        chain,
        vec![
            equals(
                Expression::Named(NamedExpression::Fib(Fib {
                    result: FibResult::Type,
                    flags,
                })),
                Expression::String("local".into()),
            ),
            equals(
                field("tcp", "dport"),
                Expression::Number(u32::from(host_port)),
            ),
            Statement::DNAT(Some(NAT {
                addr: Some(Expression::String(container.to_string().into())),
                family: Some(NATFamily::IP),
                port: Some(Expression::Number(u32::from(container_port))),
                flags: None,
            })),
        ],
        Some(comment.to_string()),
    )
}

/// The skeleton and, per forward, a rule in prerouting (traffic arriving
/// from outside) and one in output (connections made on the host itself).
pub(crate) fn publish_batch(
    container: Ipv4Addr,
    forwards: &[crate::spec::PortForward],
    comment: &str,
) -> Nftables<'static> {
    let mut batch = Batch::new();
    skeleton(&mut batch);
    for forward in forwards {
        for chain in [PREROUTING, OUTPUT] {
            batch.add(NfListObject::Rule(dnat_rule(
                chain,
                container,
                forward.host_port,
                forward.container_port,
                comment,
            )));
        }
    }
    batch.to_nftables()
}

/// Adds the DNAT rules for `forwards` to `container` and returns their
/// handles (read from `nft --echo`), in one nft process.
pub(crate) fn publish(
    host: &Netns,
    container: Ipv4Addr,
    forwards: &[crate::spec::PortForward],
    comment: &str,
) -> Result<Vec<PublishedRule>, NetworkError> {
    let batch = publish_batch(container, forwards, comment);
    let echoed = host
        .run_in(|| helper::apply_and_return_ruleset(&batch).map_err(|e| e.to_string()))?
        .map_err(|message| NetworkError::Nft {
            step: "publish ports",
            message,
        })?;
    let rules: Vec<PublishedRule> = echoed
        .objects
        .iter()
        .filter_map(|object| match object {
            NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(rule)))
            | NfObject::ListObject(NfListObject::Rule(rule)) => Some(PublishedRule {
                chain: rule.chain.to_string(),
                handle: rule.handle?,
            }),
            _ => None,
        })
        .collect();
    if rules.len() != forwards.len() * 2 {
        return Err(NetworkError::Nft {
            step: "publish ports",
            message: format!(
                "nft --echo returned {} rule handles, expected {}",
                rules.len(),
                forwards.len() * 2
            ),
        });
    }
    Ok(rules)
}

/// Deletes the given rules, one batch.
pub(crate) fn unpublish_batch(rules: &[PublishedRule]) -> Nftables<'static> {
    let mut batch = Batch::new();
    for published in rules {
        let mut deleted = rule(PREROUTING, Vec::new(), None);
        deleted.chain = Cow::Owned(published.chain.clone());
        deleted.handle = Some(published.handle);
        batch.delete(NfListObject::Rule(deleted));
    }
    batch.to_nftables()
}

pub(crate) fn unpublish(host: &Netns, rules: &[PublishedRule]) -> Result<(), NetworkError> {
    if rules.is_empty() {
        return Ok(());
    }
    apply(host, "delete published ports", &unpublish_batch(rules))
}

/// Deletes `inet isocheck` whether or not it exists: the `add` first makes
/// the delete succeed when it does not, in the same atomic batch.
pub(crate) fn delete_table_batch() -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    batch.to_nftables()
}

pub(crate) fn delete_table(host: &Netns) -> Result<(), NetworkError> {
    apply(host, "delete table inet isocheck", &delete_table_batch())
}

/// Whether `inet isocheck` exists in `host`.
pub(crate) fn table_exists(host: &Netns) -> Result<bool, NetworkError> {
    let listed = host
        .run_in(|| {
            helper::get_current_ruleset_with_args(helper::DEFAULT_NFT, ["list", "tables"])
                .map_err(|e| e.to_string())
        })?
        .map_err(|message| NetworkError::Nft {
            step: "list tables",
            message,
        })?;
    Ok(listed.objects.iter().any(|object| {
        matches!(object, NfObject::ListObject(NfListObject::Table(t))
            if t.family == NfFamily::INet && t.name == TABLE)
    }))
}

fn apply(host: &Netns, step: &'static str, batch: &Nftables<'_>) -> Result<(), NetworkError> {
    host.run_in(|| helper::apply_ruleset(batch).map_err(|e| e.to_string()))?
        .map_err(|message| NetworkError::Nft { step, message })
}
