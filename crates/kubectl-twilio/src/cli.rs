//! The command line: subcommands, flags and the help a newcomer reads.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const ABOUT: &str =
    "Day-two commands for twilio-operator's TwilioApiKeys: status, rotate, revoke, keys, inspect secret";

const LONG_ABOUT: &str = "\
Day-two commands for twilio-operator.

A TwilioApiKey resource asks twilio-operator for one Twilio API key: the operator creates the key
in Twilio, writes its SID and secret into a Kubernetes Secret, rotates it when asked, and deletes
it when the resource goes. These commands show where a TwilioApiKey stands, and change it the way
the operator expects.

kubectl runs any executable named kubectl-<name> on the PATH as `kubectl <name>`: with
kubectl-twilio installed, this is `kubectl twilio`. Run `kubectl twilio <command> --help` for the
details of a command.";

const EXAMPLES: &str = "\
Examples:
  kubectl twilio status payments-api -n payments          # is the key Ready? which key, which Secret?
  kubectl twilio rotate payments-api -n payments --wait   # a new key now; wait until it is delivered
  kubectl twilio revoke payments-api -n payments          # kill switch: delete its keys (asks first)
  kubectl twilio inspect secret payments-api -n payments  # whose Secret is this, is its key current?
  kubectl twilio keys -n payments                         # every key in the accounts, and who manages it

Exit codes:
  0  done (status: the key is Ready)
  1  the answer is no (status: not Ready; rotate --wait: timed out; revoke: not confirmed)
  2  error (bad arguments, cluster unreachable, not found, access denied)";

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-twilio",
    bin_name = "kubectl twilio",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub command: Command,
}

/// Which cluster and namespace: as kubectl's own flags.
#[derive(Args, Debug)]
pub struct Target {
    /// Namespace of the resource [default: the namespace of the kubeconfig's context, else "default"]
    #[arg(short, long, global = true, value_name = "NAMESPACE", help_heading = "Cluster options")]
    pub namespace: Option<String>,
    /// Kubeconfig context to use [default: the current context]
    #[arg(long, global = true, value_name = "CONTEXT", help_heading = "Cluster options")]
    pub context: Option<String>,
    /// Path to the kubeconfig file [default: $KUBECONFIG, else ~/.kube/config, else the in-cluster config]
    #[arg(long, global = true, value_name = "PATH", help_heading = "Cluster options")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show a TwilioApiKey on one screen: conditions, key, Secret, rotation, account, Events
    #[command(
        long_about = "\
Show a TwilioApiKey on one screen:
  - its Ready, Reconciling and Stalled conditions (status, reason, message, age);
  - the key the operator delivers: its SID, type and age, and when it is rotated next;
  - the Secret the key is in;
  - old keys still valid after a rotation, and when each is deleted in Twilio;
  - the account it is created in (TwilioAccount or ClusterTwilioAccount, its account SID, whether
    it is Ready);
  - the last 10 Events about it, newest last.

Exit code 0 when the key is Ready for its current spec, 1 when it is not (in progress, stalled,
revoked, being deleted), 2 on errors: `kubectl twilio status NAME || alert` works in scripts.",
        after_help = "\
Examples:
  kubectl twilio status payments-api -n payments
  kubectl twilio status payments-api --context prod -n payments
  until kubectl twilio status payments-api -n payments > /dev/null; do sleep 5; done"
    )]
    Status {
        /// Name of the TwilioApiKey
        name: String,
    },

    /// Replace a TwilioApiKey's key with a new one now (the old one stays valid for the grace period)
    #[command(
        long_about = "\
Replace a TwilioApiKey's key with a new one, now.

Sets the annotation twilio-operator.dev/rotate to the current UTC time. The operator answers any
new value with a rotation: it creates a new key in Twilio and writes it into the same Secret, and
keeps the old key valid for spec.rotation.gracePeriod (default 10m), so that running pods can move
to the new key, before it deletes the old one in Twilio. It is what
  kubectl annotate twkey NAME twilio-operator.dev/rotate=<new value> --overwrite
does, with a value that is always new.",
        after_help = "\
Examples:
  kubectl twilio rotate payments-api -n payments
  kubectl twilio rotate payments-api -n payments --wait --timeout 2m"
    )]
    Rotate(RotateArgs),

    /// Kill switch: delete every key of a TwilioApiKey in Twilio and its Secret (--undo: a new key)
    #[command(
        long_about = "\
Kill switch: revoke every key of a TwilioApiKey.

Sets spec.revoked to true. The operator then deletes every key of the resource in Twilio at once
(the current key and the old keys still in their grace period) and deletes its Secret: whatever
uses those keys stops authenticating. The resource stays, with Ready=False and reason Revoked.
Asks for confirmation unless --yes.

--undo sets spec.revoked back to false: the operator issues a new key (a new SID and secret; the
revoked keys never come back) and writes it into the Secret.",
        after_help = "\
Examples:
  kubectl twilio revoke payments-api -n payments          # asks, then revokes
  kubectl twilio revoke payments-api -n payments --yes    # no question (scripts)
  kubectl twilio revoke payments-api -n payments --undo   # a fresh key"
    )]
    Revoke(RevokeArgs),

    /// List every key in the accounts and who manages it (a TwilioApiKey, a pending name, nobody)
    #[command(
        long_about = "\
List every key in a Twilio account, and who manages it.

For each account (the TwilioAccounts of the namespace and the ClusterTwilioAccounts, or only the
one --account names), shows what the operator acts with (the auth token or a Main key), how many
keys its latest listing found (managed by a TwilioApiKey here, unmanaged, pending), and one row
per key: those TwilioApiKeys record (current or retiring) with their resource, and the others
the account's status lists (the oldest 20) as \"nobody\" (made in the Console, by another tool,
or by a resource that is gone) or as a pending name (a key being created, here or by an operator
in another cluster that shares the account). The operator never deletes a key it cannot prove it
created: this is a report.

Reads TwilioApiKeys in every namespace (or, without that right, in the namespace only); makes no
call to Twilio.",
        after_help = "\
Examples:
  kubectl twilio keys -n payments                 # the namespace's TwilioAccounts and the ClusterTwilioAccounts
  kubectl twilio keys --account main -n payments  # one account: a TwilioAccount of -n, else a ClusterTwilioAccount"
    )]
    Keys {
        /// Only this account: a TwilioAccount in the namespace, else the ClusterTwilioAccount of that name
        #[arg(long, value_name = "NAME")]
        account: Option<String>,
    },

    /// Explain an object of twilio-operator (for now: a Secret it delivers)
    #[command(subcommand, after_help = "Examples:\n  kubectl twilio inspect secret payments-api -n payments")]
    Inspect(Inspect),
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    /// Name of the TwilioApiKey
    pub name: String,
    /// Wait until a new key is delivered and the resource is Ready again (exit code 1 on timeout)
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, e.g. 90s, 5m
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// Name of the TwilioApiKey
    pub name: String,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub yes: bool,
    /// Set spec.revoked back to false: the operator issues a new key
    #[arg(long)]
    pub undo: bool,
}

#[derive(Subcommand, Debug)]
pub enum Inspect {
    /// Tell which TwilioApiKey a Secret belongs to and whether its key is current (never shows values)
    #[command(
        long_about = "\
Tell which TwilioApiKey a Secret belongs to, and whether the key it holds is current.

Reads the Secret's annotations twilio-operator.dev/owner and twilio-operator.dev/owner-uid and
checks that the named TwilioApiKey exists with that UID; if it does not, the Secret is orphaned
(its owner is gone), foreign (another resource of that name), or handed over (released by a
resource deleted with deletionPolicy: Orphan). Then compares the key the Secret holds (annotation
twilio-operator.dev/key-sid) with the resource's status: current (the key delivered now),
retiring (replaced, valid until its grace period ends) or stale. Lists the Secret's data keys by
name. Never prints a value of the Secret, nor its size.",
        after_help = "\
Examples:
  kubectl twilio inspect secret payments-api -n payments"
    )]
    Secret {
        /// Name of the Secret
        name: String,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    twilio_operator_api::duration::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_go_anywhere_as_in_kubectl() {
        let cli = Cli::try_parse_from(["kubectl-twilio", "-n", "team", "status", "app"]).unwrap();
        assert_eq!(cli.target.namespace.as_deref(), Some("team"));
        let cli =
            Cli::try_parse_from(["kubectl-twilio", "rotate", "app", "--wait", "--timeout", "90s", "--context", "prod"])
                .unwrap();
        assert_eq!(cli.target.context.as_deref(), Some("prod"));
        let Command::Rotate(args) = cli.command else { panic!("rotate") };
        assert!(args.wait);
        assert_eq!(args.timeout, Duration::from_secs(90));
        let cli = Cli::try_parse_from(["kubectl-twilio", "inspect", "secret", "app", "--namespace=team"]).unwrap();
        assert!(matches!(cli.command, Command::Inspect(Inspect::Secret { ref name }) if name == "app"));
        assert!(Cli::try_parse_from(["kubectl-twilio", "rotate", "app", "--timeout", "soon"]).is_err());
        let cli = Cli::try_parse_from(["kubectl-twilio", "revoke", "app", "-y", "--undo"]).unwrap();
        assert!(matches!(cli.command, Command::Revoke(RevokeArgs { yes: true, undo: true, .. })));
    }
}
