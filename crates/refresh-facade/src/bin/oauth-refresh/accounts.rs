//! `accounts add|import|list|show|remove|set-status`.

use std::io::Read;
use std::path::Path;

use refresh_facade::import::{ImportError, MAX_IMPORT_BYTES, parse_import};
use refresh_facade::{
    AccountFilter, AccountId, AccountStatus, ImportRefused, MetadataUpdate, NewAccount,
    RefreshStack, StorageErrorKind,
};
use serde_json::{Map, Value, json};

use crate::cli::{AccountsCommand, AddArgs};
use crate::config::Loaded;
use crate::error::CliError;
use crate::keys::Missing;
use crate::output;
use crate::view;

/// Runs one `accounts` subcommand.
pub(crate) async fn run(loaded: &Loaded, command: AccountsCommand) -> Result<(), CliError> {
    // Input files are checked before anything is opened.
    match command {
        AccountsCommand::Import { file, json } => {
            let bytes = read_input(&file)?;
            let (stack, _) = crate::stack::build(loaded, false, Missing::Fail, None).await?;
            let accounts =
                parse_import(&bytes, stack.executors()).map_err(|e| import_error(&file, &e))?;
            let count = accounts.len();
            let stored =
                import(&stack, accounts, &format!("import file {}", file.display())).await?;
            if json {
                output::print_json(&Value::Array(
                    stored.iter().map(view::account_json).collect(),
                ));
            } else {
                output::print_line(&format!(
                    "imported {count} accounts from {}",
                    file.display()
                ));
                for account in &stored {
                    output::print_line(&format!(
                        "  {} {} ({})",
                        account.id.get(),
                        account.name,
                        account.platform.as_str()
                    ));
                }
            }
            crate::stack::settle(&stack, loaded).await
        }
        AccountsCommand::Add(args) => add(loaded, args).await,
        AccountsCommand::Login(args) => crate::login::login(loaded, args).await,
        AccountsCommand::Relogin(args) => crate::login::relogin(loaded, args).await,
        AccountsCommand::ImportCli(args) => crate::import_cli::import_cli(loaded, args).await,
        AccountsCommand::List {
            platform,
            status,
            json,
        } => {
            let filter = AccountFilter {
                platform: platform
                    .map(|p| {
                        p.parse()
                            .map_err(|_| CliError::config("--platform: unknown platform"))
                    })
                    .transpose()?,
                status: status.map(AccountStatus::from),
            };
            let (stack, _) = crate::stack::build(loaded, false, Missing::Fail, None).await?;
            list(&stack, &filter, json).await
        }
        AccountsCommand::Show { id, json } => {
            let (stack, _) = crate::stack::build(loaded, false, Missing::Fail, None).await?;
            let account = stack
                .repository()
                .get(AccountId(id))
                .await
                .map_err(|e| CliError::with(format!("cannot read account {id}"), e))?
                .ok_or_else(|| unknown(id))?;
            if json {
                output::print_json(&view::account_json(&account));
            } else {
                for line in view::details(&account) {
                    output::print_line(&line);
                }
            }
            Ok(())
        }
        AccountsCommand::Remove { id } => {
            let (stack, _) = crate::stack::build(loaded, false, Missing::Fail, None).await?;
            let removed = stack
                .catalog()
                .delete(AccountId(id))
                .await
                .map_err(|e| CliError::with(format!("cannot remove account {id}"), e))?;
            if !removed {
                return Err(unknown(id));
            }
            output::print_line(&format!("removed account {id}"));
            Ok(())
        }
        AccountsCommand::SetStatus { id, status } => {
            let (stack, _) = crate::stack::build(loaded, false, Missing::Fail, None).await?;
            let status = AccountStatus::from(status);
            let update = MetadataUpdate {
                status: Some(status),
                error_message: (status == AccountStatus::Active).then_some(None),
                ..MetadataUpdate::default()
            };
            let account = stack
                .catalog()
                .update_metadata(AccountId(id), &update)
                .await
                .map_err(|e| match e.kind() {
                    StorageErrorKind::NotFound => unknown(id),
                    _ => CliError::with(format!("cannot update account {id}"), e),
                })?;
            output::print_line(&format!("account {id} is now {}", account.status.as_str()));
            Ok(())
        }
    }
}

fn unknown(id: i64) -> CliError {
    CliError::new(format!("account {id} not found"))
}

/// Reads a file, or stdin for `-`, bounded.
fn read_input(path: &Path) -> Result<Vec<u8>, CliError> {
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_IMPORT_BYTES).unwrap_or(u64::MAX) + 1;
    let result = if path == Path::new("-") {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    result.map_err(|e| CliError::config(format!("{}: cannot read: {e}", path.display())))?;
    Ok(bytes)
}

fn import_error(file: &Path, error: &ImportError) -> CliError {
    CliError::config(format!(
        "import file {}: {error}; nothing was imported",
        file.display()
    ))
}

async fn import(
    stack: &RefreshStack,
    accounts: Vec<NewAccount>,
    what: &str,
) -> Result<Vec<refresh_facade::Account>, CliError> {
    stack.import(accounts).await.map_err(|error| match error {
        ImportRefused::Claims(refresh_facade::import::CheckError::Claimed(e)) => {
            CliError::config(format!("{what}: {e}; nothing was imported"))
        }
        ImportRefused::Store(e) => match e.taken_refresh_token() {
            Some(taken) => CliError::config(format!(
                "{what}: {}; nothing was imported",
                ImportError::taken(taken)
            )),
            None if e.kind() == StorageErrorKind::InvalidData => {
                CliError::config(format!("{what}: {e}; nothing was imported"))
            }
            None => CliError::with(format!("{what}: nothing was imported"), e),
        },
        other => CliError::with(format!("{what}: nothing was imported"), other),
    })
}

async fn add(loaded: &Loaded, args: AddArgs) -> Result<(), CliError> {
    let path = args.credentials_file.clone().unwrap_or_else(|| "-".into());
    let bytes = read_input(&path)?;
    let credentials: Value = serde_json::from_slice(&bytes).map_err(|e| {
        CliError::config(format!(
            "credentials ({}): not a JSON object (line {}, column {})",
            path.display(),
            e.line(),
            e.column()
        ))
    })?;
    let extra: Value = match &args.extra {
        Some(text) => serde_json::from_str(text)
            .map_err(|_| CliError::config("--extra: not a JSON object"))?,
        None => Value::Object(Map::new()),
    };
    let status = AccountStatus::from(args.status);
    let entry = json!([{
        "name": args.name,
        "platform": args.platform,
        "type": args.account_type,
        "credentials": credentials,
        "extra": extra,
        "proxy": args.proxy,
        "status": status.as_str(),
        "priority": args.priority,
    }]);
    let bytes = serde_json::to_vec(&entry).unwrap_or_default();
    let (stack, _) = crate::stack::build(loaded, false, Missing::Fail, None).await?;
    let accounts = parse_import(&bytes, stack.executors()).map_err(|e| {
        let field = if e.field.is_empty() {
            String::new()
        } else {
            format!("field `{}`: ", e.field)
        };
        CliError::config(format!("accounts add: {field}{}", e.reason))
    })?;
    let account = import(&stack, accounts, "accounts add").await?.remove(0);
    if args.json {
        output::print_json(&view::account_json(&account));
    } else {
        output::print_line(&format!(
            "added account {} ({}, {})",
            account.id.get(),
            account.name,
            account.platform.as_str()
        ));
    }
    crate::stack::settle(&stack, loaded).await
}

async fn list(stack: &RefreshStack, filter: &AccountFilter, json: bool) -> Result<(), CliError> {
    let mut after = None;
    let mut rows = Vec::new();
    if !json {
        output::print_line(view::TABLE_HEADER);
    }
    loop {
        let page = stack
            .catalog()
            .list(filter, after, 500)
            .await
            .map_err(|e| CliError::with("cannot list accounts", e))?;
        for corrupt in &page.corrupt {
            let message = format!("unreadable: {}", corrupt.error.kind());
            if json {
                rows.push(json!({"id": corrupt.id.get(), "error_message": message}));
            } else {
                output::print_line(&format!("{:<7} ({message})", corrupt.id.get()));
            }
        }
        for account in &page.accounts {
            if json {
                rows.push(view::account_json(account));
            } else {
                output::print_line(&view::table_row(account));
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if json {
        output::print_json(&Value::Array(rows));
    }
    Ok(())
}
