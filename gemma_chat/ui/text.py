"""The UI's words in English and Russian, and how a callback renders them in the user's language.

Three tables. TRANSLATIONS: the fixed labels, which Gradio translates in the browser (gr.I18n follows
the browser's language). MESSAGES: what the callbacks compose (the balance line, confirmations, page
labels, table headers), rendered on the server in the language of the request's Accept-Language (Gradio
translates only static text, not values a callback returns). RUSSIAN_BY_ENGLISH: the messages the
services send the UI (the errors they raise, a turn's message from chats/turn.py), keyed by their English
template the way gettext keys its catalogue by the English string: domain code stays English and
knows nothing of languages; it raises a template with its parameters (errors.py, wording.py), and the
UI looks the template up and fills in the same parameters, at its edge, once.

Templates are str.format strings; `{n:credit|credits}` is the word that goes with the number n (two
forms: the English rule, three: the Russian one). English output is the template as it always was.
"""

from __future__ import annotations

import re

from ..errors import GemmaChatError
from ..wording import Message, render

TRANSLATIONS = {
    "en": {
        "sign_in_intro": "Log in, or create an account to get free starting credits.",
        "username": "Username",
        "password": "Password",
        "log_in": "Log in",
        "create_account": "Create account",
        "log_out": "Log out",
        "log_out_everywhere": "Sign out everywhere",
        "chat": "Chat",
        "model": "Model",
        "message": "Message",
        "send": "Send",
        "stop": "Stop",
        "new_chat": "New chat",
        "history": "History",
        "previous": "Previous",
        "next": "Next",
        "full_prompt": "Prompt (full text)",
        "full_answer": "Answer (full text)",
        "top_up": "Top up",
        "credits_to_add": "Credits to add",
        "admin": "Admin",
        "from_date": "From (UTC date)",
        "to_date": "To (UTC date)",
        "refresh": "Refresh",
        "requests_per_model": "### Requests per model",
        "credits_per_user": "### Credits spent per user",
        "requests_per_day": "### Requests per day",
        "recent_errors": "### Recent errors",
        "error_details": "Error details",
        "models_section": "### Models (a model that crashed repeatedly stays down until restarted here)",
        "model_to_restart": "Model to restart",
        "restart_model": "Restart model",
        "chats": "Chats",
        "search_chats": "Search chats",
        "search": "Search",
        "chat_title": "Title of the selected chat",
        "open_chat": "Open",
        "rename": "Rename",
        "delete": "Delete",
        "model_performance": "### Model performance (time to first token, speed, answer time)",
        "active_users_per_day": "### Active users per day",
        "account": "Account",
        "current_password": "Current password",
        "new_password": "New password",
        "change_password": "Change password",
        "api_keys_intro": "### API keys\nScripts, editors and the `openai` package can use the models through `/v1`, billed to your balance. A key is shown once, when you create it.",
        "key_name": "Key name",
        "create_api_key": "Create API key",
        "new_api_key": "Your new API key (shown only now)",
        "key_to_revoke": "Key to revoke",
        "revoke": "Revoke",
        "sign_in_intro_closed": "Log in with the account an administrator made for you.",
        "topup_closed": "Top-ups are turned off here: ask an administrator for credits.",
        "users_section": "### Users",
        "search_users": "Search users by name",
        "credits_to_grant": "Credits to grant (negative to correct)",
        "grant_note": "Note (kept in the ledger)",
        "grant_credits": "Grant credits",
        "disable_account": "Disable",
        "enable_account": "Enable",
        "promote_account": "Make administrator",
        "demote_account": "Remove administrator",
        "unlock_account": "Unlock",
        "password_to_set": "New password for the account",
        "set_password": "Set password",
        "create_user": "Create user",
        "new_account_name": "Username of the new account",
        "new_account_password": "Its password",
        "admin_actions_section": "### Administrator actions (latest first)",
        "regenerate": "Regenerate",
        "edit_last_message": "Edit last message",
        "download_statement": "Download statement (CSV)",
        # issue 19: the chat screen
        "chat_settings": "Chat settings",
        "system_prompt": "System prompt",
        "system_prompt_info": "Instructions the model gets with every message of this chat (they count toward its context).",
        "default_system_prompt": "System prompt for new chats",
        "default_system_prompt_info": "New chats start with it; each chat can change its own under Chat settings.",
        "export_all_chats": "Export all chats (JSON)",
        "import_chats": "Import chats (JSON)",
        "import_chat": "Import chat",
        "cancel": "Cancel",
        "save": "Save",
        "admin_reports": "Reports",
        "admin_performance": "Model performance",
        "admin_users": "Users",
        "admin_models": "Models",
        "admin_errors": "Errors",
        "page_1_of_1": "Page 1 of 1",
    },
    "ru": {
        "sign_in_intro": "Войдите или создайте учётную запись, чтобы получить стартовые кредиты.",
        "username": "Имя пользователя",
        "password": "Пароль",
        "log_in": "Войти",
        "create_account": "Создать учётную запись",
        "log_out": "Выйти",
        "log_out_everywhere": "Выйти на всех устройствах",
        "chat": "Чат",
        "model": "Модель",
        "message": "Сообщение",
        "send": "Отправить",
        "stop": "Стоп",
        "new_chat": "Новый чат",
        "history": "История",
        "previous": "Назад",
        "next": "Вперёд",
        "full_prompt": "Запрос (полностью)",
        "full_answer": "Ответ (полностью)",
        "top_up": "Пополнить",
        "credits_to_add": "Сколько кредитов добавить",
        "admin": "Администрирование",
        "from_date": "С (дата UTC)",
        "to_date": "По (дата UTC)",
        "refresh": "Обновить",
        "requests_per_model": "### Запросы по моделям",
        "credits_per_user": "### Потраченные кредиты по пользователям",
        "requests_per_day": "### Запросы по дням",
        "recent_errors": "### Последние ошибки",
        "error_details": "Подробности ошибки",
        "models_section": "### Модели (модель, которая падала снова и снова, ждёт перезапуска здесь)",
        "model_to_restart": "Какую модель перезапустить",
        "restart_model": "Перезапустить модель",
        "chats": "Чаты",
        "search_chats": "Поиск по чатам",
        "search": "Найти",
        "chat_title": "Название выбранного чата",
        "open_chat": "Открыть",
        "rename": "Переименовать",
        "delete": "Удалить",
        "model_performance": "### Производительность моделей (время до первого токена, скорость, время ответа)",
        "active_users_per_day": "### Активные пользователи по дням",
        "account": "Учётная запись",
        "current_password": "Текущий пароль",
        "new_password": "Новый пароль",
        "change_password": "Сменить пароль",
        "api_keys_intro": "### Ключи API\nСкрипты, редакторы и пакет `openai` могут обращаться к моделям через `/v1` за счёт вашего баланса. Ключ показывается один раз, при создании.",
        "key_name": "Название ключа",
        "create_api_key": "Создать ключ API",
        "new_api_key": "Ваш новый ключ API (показан только сейчас)",
        "key_to_revoke": "Какой ключ отозвать",
        "revoke": "Отозвать",
        "sign_in_intro_closed": "Войдите с учётной записью, которую для вас создал администратор.",
        "topup_closed": "Пополнение здесь отключено: попросите кредиты у администратора.",
        "users_section": "### Пользователи",
        "search_users": "Поиск пользователей по имени",
        "credits_to_grant": "Сколько кредитов начислить (отрицательное число исправляет)",
        "grant_note": "Примечание (сохраняется в журнале)",
        "grant_credits": "Начислить кредиты",
        "disable_account": "Отключить",
        "enable_account": "Включить",
        "promote_account": "Сделать администратором",
        "demote_account": "Снять права администратора",
        "unlock_account": "Разблокировать",
        "password_to_set": "Новый пароль для учётной записи",
        "set_password": "Задать пароль",
        "create_user": "Создать пользователя",
        "new_account_name": "Имя новой учётной записи",
        "new_account_password": "Её пароль",
        "admin_actions_section": "### Действия администраторов (сначала последние)",
        "regenerate": "Ответить заново",
        "edit_last_message": "Изменить последнее сообщение",
        "download_statement": "Скачать выписку (CSV)",
        "chat_settings": "Настройки чата",
        "system_prompt": "Системная инструкция",
        "system_prompt_info": "Указания, которые модель получает с каждым сообщением этого чата (они занимают часть контекста).",
        "default_system_prompt": "Системная инструкция для новых чатов",
        "default_system_prompt_info": "Новые чаты начинаются с неё; в каждом чате её можно изменить в настройках чата.",
        "export_all_chats": "Экспорт всех чатов (JSON)",
        "import_chats": "Импорт чатов (JSON)",
        "import_chat": "Импорт чата",
        "cancel": "Отмена",
        "save": "Сохранить",
        "admin_reports": "Отчёты",
        "admin_performance": "Скорость моделей",
        "admin_users": "Пользователи",
        "admin_models": "Модели",
        "admin_errors": "Ошибки",
        "page_1_of_1": "Страница 1 из 1",
    },
}

CREDITS_EN = "{n} {n:credit|credits}"

# What the callbacks compose, by key. Codes shown in tables (a ledger kind, a status) have a key
# `<group>_<code>` whose English is the code itself, as the tables always showed it.
MESSAGES = {
    "en": {
        "balance": "**Balance: {n} {n:credit|credits}**",
        "signed_in": "Signed in as **{username}**",
        "signed_in_admin": "Signed in as **{username}** (admin)",
        "session_expired": "Your session has expired; please log in again.",
        "model_choice": "{label} · {price} {price:credit|credits}",
        "model_unavailable": "{label} is not available: {reason}",
        # the chat
        "turn_figures": "{tokens} {tokens:token|tokens} · {speed} tokens/s · {seconds} s",
        "answer_footer": "— {model} · {credits} {credits:credit|credits}",
        "answer_footer_imported": "— {model} · imported",
        "answer_stopped": "Stopped.",
        "answer_failed": "This answer failed. Nothing was charged.",
        "model_restarting": "{model} is restarting; your answer starts as soon as it is back…",
        "queue_position": "Waiting for {model}: {position} ahead of you…",
        "regenerate_price": "Regenerate ({price} {price:credit|credits})",
        "cancel_edit": "Cancel edit",
        "no_answer_to_regenerate": "There is no answer to regenerate yet.",
        "no_message_to_edit": "There is no message to edit yet.",
        "wait_for_answer": "Wait for the answer to finish (or press Stop) first.",
        # lists
        "page_of": "Page {page} of {pages}",
        "history_empty": "Page {page} of {pages} — no chats yet",
        "chats_empty": "Page {page} of {pages} — no chats yet",
        "chats_none_found": "Page {page} of {pages} — no chats found",
        "chat_renamed": "Renamed to “{title}”.",
        "chat_deleted": "Deleted “{title}”.",
        "chat_imported": "Imported “{title}” ({n} {n:message|messages}).",
        "chats_imported": "Imported {chats} {chats:chat|chats} ({n} {n:message|messages}).",
        "statement_page": "Page {page} of {pages} — {total} {total:entry|entries}",
        "never": "never",
        # top-up and statement
        "topped_up": "Added {amount} {amount:credit|credits}. New balance: {balance} {balance:credit|credits}.",
        "totals_entries": "Entries",
        "totals_credits": "Credits",
        "totals_balance": "Balance",
        "total_signup": "Sign-up",
        "total_topup": "Top-ups",
        "total_grant": "Grants",
        "total_charge": "Charges",
        "kind_signup": "signup",
        "kind_topup": "topup",
        "kind_grant": "grant",
        "kind_charge": "charge",
        "status_ok": "ok",
        "status_stopped": "stopped",
        "status_error": "error",
        "status_refused": "refused",
        "status_interrupted": "interrupted",
        "status_pending": "pending",
        # the Account tab
        "password_changed": "Password changed. {n} other {n:session|sessions} signed out.",
        "password_changed_alone": "Password changed. No other session was signed in.",
        "key_created": "Copy this key now: it is shown only once. Send it as `Authorization: Bearer <key>` to /v1.",
        "key_revoked": "Revoked {name}: it stops working at once.",
        "unnamed_key": "unnamed",
        # the Admin tab
        "users_page": "Page {page} of {pages} · {total} {total:account|accounts}",
        "users_page_matching": "Page {page} of {pages} · {total} {total:account|accounts} matching “{search}”",
        "granted": "Granted {amount} credits to {username}; balance now {balance}.",
        "account_disabled": "{username} disabled (signed out everywhere; API keys stopped): now {role}, {state}.",
        "account_enabled": "{username} enabled: now {role}, {state}.",
        "account_promoted": "{username} promoted: now {role}, {state}.",
        "account_demoted": "{username} demoted (signed out everywhere): now {role}, {state}.",
        "account_unlocked": "{username} unlocked: now {role}, {state}.",
        "now_admin": "an administrator",
        "now_user": "a user",
        "now_active": "active",
        "now_disabled": "disabled",
        "password_set": "New password set for {username}; their sessions have ended.",
        "user_created": "Created {username} with {balance} credits.",
        "role_admin": "admin",
        "role_user": "user",
        "state_active": "active",
        "state_disabled": "disabled",
        "state_locked": "locked",
        "action_grant": "credits granted",
        "action_disable": "disabled",
        "action_enable": "enabled",
        "action_promote": "made administrator",
        "action_demote": "administrator removed",
        "action_unlock": "unlocked",
        "action_reset_password": "password set",
        "action_create_user": "account created",
        "model_restarting_admin": "Restarting the {tier} model; its state follows below.",
        "model_state_ready": "ready",
        "model_state_unavailable": "unavailable",
        "model_state_loading": "loading",
        "model_state_restarting": "restarting",
        "model_state_failed": "failed",
        "model_state_crashed": "crashed",
        "model_state_closed": "closed",
        "model_state_unreachable": "unreachable",
        # table headers
        "col_chat": "Chat",
        "col_last_used": "Last used (UTC)",
        "col_turns": "Turns",
        "col_date_time": "Date and time (UTC)",
        "col_model": "Model",
        "col_credits": "Credits",
        "col_status": "Status",
        "col_prompt": "Prompt",
        "col_answer": "Answer",
        "col_time": "Time (UTC)",
        "col_kind": "Kind",
        "col_amount": "Amount",
        "col_balance_after": "Balance after",
        "col_user": "User",
        "col_balance": "Balance",
        "col_held": "Held",
        "col_role": "Role",
        "col_state": "State",
        "col_last_login": "Last login (UTC)",
        "col_requests": "Requests",
        "col_by": "By",
        "col_action": "Action",
        "col_account": "Account",
        "col_detail": "Detail",
        "col_name": "Name",
        "col_key": "Key",
        "col_created": "Created (UTC)",
        "col_tier": "Tier",
        "col_backend": "Backend",
        "col_reason": "Reason",
        "col_ok": "Answered",
        "col_stopped": "Stopped",
        "col_failed": "Failed",
        "col_refused": "Refused",
        "col_credits_spent": "Credits spent",
        "col_credits_topped_up": "Topped up",
        "col_credits_granted": "Granted",
        "col_error_id": "Error id",
        "col_location": "Where",
        "col_exception_type": "Error type",
        "col_message": "Message",
        "col_request_id": "Request id",
        "col_error_rate": "Error rate",
        "col_ttft_median_ms": "First token, median (ms)",
        "col_ttft_p95_ms": "First token, p95 (ms)",
        "col_tokens_per_s": "Tokens/s",
        "col_answer_median_ms": "Answer, median (ms)",
        "col_answer_p95_ms": "Answer, p95 (ms)",
        "col_day": "Day (UTC)",
        "col_active_users": "Active users",
        # the sign-in form's fallback, shown by the browser when the /auth route cannot be reached
        "sign_in_failed": "Something went wrong; please try again.",
        "error_title": "Error",
        # issue 19: the chat screen
        "answer_refused": "⚠ Not sent: refused before the model ran (nothing was charged). Press ↻ Retry to send this message again.",
        "answer_refused_imported": "⚠ Not answered where this chat was exported from (it was refused there).",
        "only_last_editable": "Only the last message can be edited; the chat is as it was.",
        "balance_low": "Balance low: {n} {n:credit|credits} left, {price} per answer with this model.",
        "balance_too_low": "Your balance ({n} {n:credit|credits}) does not pay for an answer with this model ({price}): top up first.",
        "system_prompt_saved": "This chat keeps the new system prompt.",
        # the versions of a regenerated or edited answer (‹ 1/2 ›): the arrows' tooltips, and a stale click
        "earlier_version": "Earlier version",
        "later_version": "Later version",
        "version_not_found": "That version of the answer is no longer in this chat.",
        "default_prompt_saved": "Saved: new chats start with this system prompt.",
        "day_today": "Today",
        "day_yesterday": "Yesterday",
        "chat_menu": "Chat actions",
        "chat_menu_rename": "Rename",
        "chat_menu_export_md": "Export (Markdown)",
        "chat_menu_export_json": "Export (JSON)",
        "chat_menu_delete": "Delete…",
        "chat_request_unknown": "That action is not one the list offers.",
        "delete_chat_question": "Delete “{title}”? Its answers stay in History and on your statement.",
        "choose_chat_first": "Choose a chat in the list first.",
        "no_chats_yet": "No chats yet: type a message to start one.",
        "no_chats_found": "No chats match.",
        "status_empty": "empty answer",
        # the Users table's row menus (admin/users.py)
        "col_actions": "Actions",
        "account_menu": "Actions for {username}",
        "account_menu_grant": "Grant credits…",
        "account_menu_set_password": "Set password…",
        "account_menu_disable": "Disable…",
        "account_menu_enable": "Enable…",
        "account_menu_promote": "Make administrator…",
        "account_menu_demote": "Remove administrator…",
        "account_menu_unlock": "Unlock…",
        "account_question_grant": "Grant credits to **{username}** (balance {balance}); a negative number corrects.",
        "account_question_set_password": "Set a new password for **{username}**? Their sessions end.",
        "account_question_disable": "Disable **{username}**? They are signed out everywhere and their API keys stop working.",
        "account_question_enable": "Enable **{username}**? They can sign in again.",
        "account_question_promote": "Make **{username}** an administrator?",
        "account_question_demote": "Remove administrator rights from **{username}**? They are signed out everywhere.",
        "account_question_unlock": "Unlock **{username}**? They can try to sign in again at once.",
        "account_request_unknown": "That action is not one the table offers.",
        "account_not_found": "That account was not found.",
        "account_action_not_offered": "“{action}” does not apply to {username} as the account is now; the table shows it afresh.",
        "account_choose_again": "Nothing is waiting to be confirmed: choose the action again from the account's ⋯ menu.",
        "no_accounts_found": "No accounts match.",
        "from_date_name": "From",
        "to_date_name": "To",
    },
    "ru": {
        "balance": "**Баланс: {n} {n:кредит|кредита|кредитов}**",
        "signed_in": "Вы вошли как **{username}**",
        "signed_in_admin": "Вы вошли как **{username}** (администратор)",
        "session_expired": "Сеанс истёк; войдите снова.",
        "model_choice": "{label} · {price} {price:кредит|кредита|кредитов}",
        "model_unavailable": "Модель {label} недоступна: {reason}",
        "turn_figures": "{tokens} {tokens:токен|токена|токенов} · {speed} ток./с · {seconds} с",
        "answer_footer": "— {model} · {credits} {credits:кредит|кредита|кредитов}",
        "answer_footer_imported": "— {model} · импортировано",
        "answer_stopped": "Остановлено.",
        "answer_failed": "Этот ответ не удался. Кредиты не списаны.",
        "model_restarting": "Модель {model} перезапускается; ответ начнётся, как только она снова заработает…",
        "queue_position": "Ожидание модели {model}: перед вами в очереди — {position}…",
        "regenerate_price": "Ответить заново ({price} {price:кредит|кредита|кредитов})",
        "cancel_edit": "Отменить изменение",
        "no_answer_to_regenerate": "Ещё нет ответа, который можно получить заново.",
        "no_message_to_edit": "Ещё нет сообщения, которое можно изменить.",
        "wait_for_answer": "Сначала дождитесь конца ответа (или нажмите «Стоп»).",
        "page_of": "Страница {page} из {pages}",
        "history_empty": "Страница {page} из {pages} — чатов пока нет",
        "chats_empty": "Страница {page} из {pages} — чатов пока нет",
        "chats_none_found": "Страница {page} из {pages} — чаты не найдены",
        "chat_renamed": "Новое название: «{title}».",
        "chat_deleted": "Чат «{title}» удалён.",
        "chat_imported": "Импортирован чат «{title}» ({n} {n:сообщение|сообщения|сообщений}).",
        "chats_imported": "Импортировано: {chats} {chats:чат|чата|чатов} ({n} {n:сообщение|сообщения|сообщений}).",
        "statement_page": "Страница {page} из {pages} — {total} {total:запись|записи|записей}",
        "never": "никогда",
        "topped_up": "Добавлено {amount} {amount:кредит|кредита|кредитов}. Новый баланс: {balance} {balance:кредит|кредита|кредитов}.",
        "totals_entries": "Записей",
        "totals_credits": "Кредитов",
        "totals_balance": "Баланс",
        "total_signup": "Регистрация",
        "total_topup": "Пополнения",
        "total_grant": "Начисления",
        "total_charge": "Списания",
        "kind_signup": "регистрация",
        "kind_topup": "пополнение",
        "kind_grant": "начисление",
        "kind_charge": "списание",
        "status_ok": "готово",
        "status_stopped": "остановлен",
        "status_error": "ошибка",
        "status_refused": "отказ",
        "status_interrupted": "прерван",
        "status_pending": "выполняется",
        "password_changed": "Пароль изменён. Завершено других сеансов: {n}.",
        "password_changed_alone": "Пароль изменён. Других открытых сеансов не было.",
        "key_created": "Скопируйте ключ сейчас: он показывается только один раз. Передавайте его в /v1 как `Authorization: Bearer <key>`.",
        "key_revoked": "Ключ {name} отозван: он сразу перестаёт работать.",
        "unnamed_key": "без названия",
        "users_page": "Страница {page} из {pages} · {total} {total:учётная запись|учётные записи|учётных записей}",
        "users_page_matching": "Страница {page} из {pages} · {total} {total:учётная запись|учётные записи|учётных записей} по запросу «{search}»",
        "granted": "Пользователю {username} начислено {amount} {amount:кредит|кредита|кредитов}; баланс теперь {balance}.",
        "account_disabled": "{username}: учётная запись отключена (все сеансы завершены, ключи API остановлены); теперь {role}, {state}.",
        "account_enabled": "{username}: учётная запись включена; теперь {role}, {state}.",
        "account_promoted": "{username}: назначен администратором; теперь {role}, {state}.",
        "account_demoted": "{username}: права администратора сняты (все сеансы завершены); теперь {role}, {state}.",
        "account_unlocked": "{username}: учётная запись разблокирована; теперь {role}, {state}.",
        "now_admin": "администратор",
        "now_user": "пользователь",
        "now_active": "учётная запись активна",
        "now_disabled": "учётная запись отключена",
        "password_set": "Для {username} задан новый пароль; все его сеансы завершены.",
        "user_created": "Создана учётная запись {username}; на счету {balance} {balance:кредит|кредита|кредитов}.",
        "role_admin": "администратор",
        "role_user": "пользователь",
        "state_active": "активна",
        "state_disabled": "отключена",
        "state_locked": "заблокирована",
        "action_grant": "начисление",
        "action_disable": "отключение",
        "action_enable": "включение",
        "action_promote": "назначение администратором",
        "action_demote": "снятие прав администратора",
        "action_unlock": "разблокировка",
        "action_reset_password": "новый пароль",
        "action_create_user": "создание учётной записи",
        "model_restarting_admin": "Модель {tier} перезапускается; её состояние показано ниже.",
        "model_state_ready": "готова",
        "model_state_unavailable": "недоступна",
        "model_state_loading": "загружается",
        "model_state_restarting": "перезапускается",
        "model_state_failed": "не загрузилась",
        "model_state_crashed": "упала",
        "model_state_closed": "закрыта",
        "model_state_unreachable": "сервер недоступен",
        "col_chat": "Чат",
        "col_last_used": "Последнее использование (UTC)",
        "col_turns": "Ответов",
        "col_date_time": "Дата и время (UTC)",
        "col_model": "Модель",
        "col_credits": "Кредиты",
        "col_status": "Статус",
        "col_prompt": "Запрос",
        "col_answer": "Ответ",
        "col_time": "Время (UTC)",
        "col_kind": "Вид",
        "col_amount": "Сумма",
        "col_balance_after": "Баланс после",
        "col_user": "Пользователь",
        "col_balance": "Баланс",
        "col_held": "Зарезервировано",
        "col_role": "Роль",
        "col_state": "Состояние",
        "col_last_login": "Последний вход (UTC)",
        "col_requests": "Запросов",
        "col_by": "Кто",
        "col_action": "Действие",
        "col_account": "Учётная запись",
        "col_detail": "Подробности",
        "col_name": "Название",
        "col_key": "Ключ",
        "col_created": "Создан (UTC)",
        "col_tier": "Уровень",
        "col_backend": "Бэкенд",
        "col_reason": "Причина",
        "col_ok": "С ответом",
        "col_stopped": "Остановлено",
        "col_failed": "С ошибкой",
        "col_refused": "Отказано",
        "col_credits_spent": "Потрачено кредитов",
        "col_credits_topped_up": "Пополнено",
        "col_credits_granted": "Начислено",
        "col_error_id": "Номер ошибки",
        "col_location": "Где",
        "col_exception_type": "Тип ошибки",
        "col_message": "Сообщение",
        "col_request_id": "Номер запроса",
        "col_error_rate": "Доля ошибок",
        "col_ttft_median_ms": "Первый токен, медиана (мс)",
        "col_ttft_p95_ms": "Первый токен, p95 (мс)",
        "col_tokens_per_s": "Токенов/с",
        "col_answer_median_ms": "Ответ, медиана (мс)",
        "col_answer_p95_ms": "Ответ, p95 (мс)",
        "col_day": "День (UTC)",
        "col_active_users": "Активных пользователей",
        "sign_in_failed": "Что-то пошло не так; попробуйте снова.",
        "error_title": "Ошибка",
        "answer_refused": "⚠ Не отправлено: отказано до запуска модели (ничего не списано). Нажмите ↻, чтобы отправить это сообщение снова.",
        "answer_refused_imported": "⚠ Там, откуда экспортирован этот чат, ответа не было (в нём отказано).",
        "only_last_editable": "Изменить можно только последнее сообщение; чат остался прежним.",
        "balance_low": "Баланс на исходе: {n} {n:кредит|кредита|кредитов}, ответ этой модели стоит {price}.",
        "balance_too_low": "Баланса ({n} {n:кредит|кредита|кредитов}) не хватает на ответ этой модели ({price}): сначала пополните.",
        "system_prompt_saved": "Чат запомнил новую системную инструкцию.",
        "earlier_version": "Предыдущая версия",
        "later_version": "Следующая версия",
        "version_not_found": "Этой версии ответа в чате больше нет.",
        "default_prompt_saved": "Сохранено: новые чаты начинаются с этой системной инструкции.",
        "day_today": "Сегодня",
        "day_yesterday": "Вчера",
        "chat_menu": "Действия с чатом",
        "chat_menu_rename": "Переименовать",
        "chat_menu_export_md": "Экспорт (Markdown)",
        "chat_menu_export_json": "Экспорт (JSON)",
        "chat_menu_delete": "Удалить…",
        "chat_request_unknown": "Такого действия в списке нет.",
        "delete_chat_question": "Удалить «{title}»? Его ответы останутся в истории и в выписке.",
        "choose_chat_first": "Сначала выберите чат в списке.",
        "no_chats_yet": "Чатов пока нет: напишите сообщение, чтобы начать.",
        "no_chats_found": "Подходящих чатов нет.",
        "status_empty": "пустой ответ",
        "col_actions": "Действия",
        "account_menu": "Действия с учётной записью {username}",
        "account_menu_grant": "Начислить кредиты…",
        "account_menu_set_password": "Задать пароль…",
        "account_menu_disable": "Отключить…",
        "account_menu_enable": "Включить…",
        "account_menu_promote": "Сделать администратором…",
        "account_menu_demote": "Снять права администратора…",
        "account_menu_unlock": "Разблокировать…",
        "account_question_grant": "Начислить кредиты учётной записи **{username}** (баланс {balance}); отрицательное число исправляет.",
        "account_question_set_password": "Задать новый пароль для **{username}**? Все её сеансы завершатся.",
        "account_question_disable": "Отключить **{username}**? Все её сеансы завершатся, а API-ключи перестанут работать.",
        "account_question_enable": "Включить **{username}**? Войти снова будет можно.",
        "account_question_promote": "Сделать **{username}** администратором?",
        "account_question_demote": "Снять права администратора с **{username}**? Все её сеансы завершатся.",
        "account_question_unlock": "Разблокировать **{username}**? Пробовать войти можно будет сразу.",
        "account_request_unknown": "Такого действия в таблице нет.",
        "account_not_found": "Такая учётная запись не найдена.",
        "account_action_not_offered": "«{action}» не подходит для {username} в её нынешнем состоянии; таблица обновлена.",
        "account_choose_again": "Подтверждать нечего: выберите действие снова в меню ⋯ учётной записи.",
        "no_accounts_found": "Подходящих учётных записей нет.",
        "from_date_name": "«С»",
        "to_date_name": "«По»",
    },
}

# Messages that reach the UI as English text: raised by the services (and by the UI's own checks),
# or a turn's message (chats/turn.py). Keyed by the English template; `{reason}` is translated in turn.
RUSSIAN_BY_ENGLISH = {
    # sessions and rights (ui/, accounts/admin.py)
    "Please log in.": "Пожалуйста, войдите.",
    "Your session has expired; please log in again.": "Сеанс истёк; войдите снова.",
    "Your session has ended; please log in again.": "Сеанс завершён; войдите снова.",
    "Administrators only.": "Только для администраторов.",
    "Something went wrong (error {error_id}).": "Что-то пошло не так (ошибка {error_id}).",
    "This request does not fit the page; reload the page.": "Запрос не подходит к этой странице; перезагрузите страницу.",
    # signing in and accounts (accounts/auth.py, web/app.py)
    "Enter a username.": "Введите имя пользователя.",
    "A username has 3 to 32 characters: letters A–Z, digits, and . _ - (no spaces).":
        "Имя пользователя — от 3 до 32 символов: латинские буквы A–Z, цифры и . _ - (без пробелов).",
    "Enter a password.": "Введите пароль.",
    "A password cannot contain a NUL character.": "Пароль не может содержать символ NUL.",
    "A password needs at least {n} characters.": "Пароль должен быть не короче {n} {n:символа|символов|символов}.",
    "A password can be at most {n} bytes in UTF-8 (72 plain letters, fewer with accents or emoji).":
        "Пароль — не больше {n} байт в UTF-8 (72 латинские буквы, меньше с диакритикой или эмодзи).",
    "The password contains an invalid character.": "Пароль содержит недопустимый символ.",
    "No user with id {user_id}.": "Нет пользователя с id {user_id}.",
    "No user named {username!r}.": "Нет пользователя с именем {username!r}.",
    "Wrong username or password.": "Неверное имя пользователя или пароль.",
    "This account is disabled. Ask an administrator to enable it.":
        "Эта учётная запись отключена. Попросите администратора её включить.",
    "This account is disabled.": "Эта учётная запись отключена.",
    "Too many failed attempts. Try again at {time} UTC (in {minutes} {minutes:minute|minutes}).":
        "Слишком много неудачных попыток. Попробуйте снова в {time} UTC (через {minutes} {minutes:минуту|минуты|минут}).",
    "Too many failed sign-ins for this account; try again in {seconds} s.":
        "Слишком много неудачных входов в эту учётную запись; попробуйте снова через {seconds} с.",
    "The username {username!r} is taken; choose another.": "Имя пользователя {username!r} занято; выберите другое.",
    "The current password is wrong.": "Текущий пароль неверен.",
    "The new password is the same as the current one.": "Новый пароль совпадает с текущим.",
    "Too many sign-ins right now; try again in 5 s.": "Сейчас слишком много входов; попробуйте снова через 5 с.",
    "The username or password is far too long.": "Имя пользователя или пароль слишком длинные.",
    "Too many sign-in attempts; try again in {seconds} s.": "Слишком много попыток входа; попробуйте снова через {seconds} с.",
    "Registration is closed; ask an administrator for an account.":
        "Регистрация закрыта; попросите администратора создать вам учётную запись.",
    "Too many new accounts from your address; try again in {minutes} {minutes:minute|minutes}.":
        "С вашего адреса создано слишком много учётных записей; попробуйте снова через {minutes} {minutes:минуту|минуты|минут}.",
    # administrator actions (accounts/admin.py)
    "Cannot demote {username}: they are the only enabled administrator. Promote another account first.":
        "Нельзя снять права администратора с {username}: это единственный активный администратор. "
        "Сначала назначьте администратором другую учётную запись.",
    "Cannot disable {username}: they are the only enabled administrator. Promote another account first.":
        "Нельзя отключить {username}: это единственный активный администратор. "
        "Сначала назначьте администратором другую учётную запись.",
    "A note must be text.": "Примечание должно быть текстом.",
    "A note is at most {n} characters.": "Примечание — не больше {n} {n:символа|символов|символов}.",
    "A note cannot contain control characters or invalid text.":
        "Примечание не может содержать управляющие символы или недопустимый текст.",
    "Credits to grant: a non-zero whole number from -{maximum:,} to {maximum:,}.": "Сколько кредитов начислить: целое ненулевое число от -{maximum:,} до {maximum:,}.",
    # credits (billing/ledger.py, ui/)
    "Credits must be a whole number.": "Количество кредитов должно быть целым числом.",
    "Credits must be a whole number, not {value:g}.": "Количество кредитов должно быть целым числом, а не {value:g}.",
    "Enter credits as a whole number from 1 to {maximum:,}.": "Введите количество кредитов — целое число от 1 до {maximum:,}.",
    "Credits must be a whole number from 1 to {maximum:,}.": "Количество кредитов — целое число от 1 до {maximum:,}.",
    "Credits must be from 1 to {maximum:,}; got {value:,}.": "Количество кредитов — от 1 до {maximum:,}; получено {value:,}.",
    "Not enough credits: this needs {price}, you have {available} available.":
        "Недостаточно кредитов: нужно {price}, доступно {available}.",
    "Not enough credits: this answer costs {price}, you have {available}.":
        "Недостаточно кредитов: ответ стоит {price}, у вас {available}.",
    "A grant must be a non-zero whole number of credits.": "Начисление — целое ненулевое число кредитов.",
    "A hold must be at least 1 credit.": "Резерв — не меньше 1 кредита.",
    "No hold for request {request_id}.": "Нет резерва для запроса {request_id}.",
    "Top-ups are turned off here; ask an administrator for credits.":
        "Пополнение здесь отключено; попросите кредиты у администратора.",
    # a chat turn (chats/turn.py) and the chats (chats/conversations.py, ui/sidebar.py)
    "Unknown model {tier!r}.": "Неизвестная модель {tier!r}.",
    "Type a message first.": "Сначала введите сообщение.",
    "The message contains a NUL character; remove it and send again.":
        "Сообщение содержит символ NUL; удалите его и отправьте снова.",
    "The message is {length:,} characters long; the limit is {limit:,}.": "Длина сообщения — {length:,} {length:символ|символа|символов}; предел — {limit:,}.",
    "The message contains an invalid character; remove it and send again.":
        "Сообщение содержит недопустимый символ; удалите его и отправьте снова.",
    "Only the last message of a chat can be regenerated or edited.":
        "Ответить заново или изменить можно только последнее сообщение чата.",
    "Only the last message of the chat can be regenerated or edited.":
        "Ответить заново или изменить можно только последнее сообщение чата.",
    "Wait for the answer to finish (or press Stop) first.": "Сначала дождитесь конца ответа (или нажмите «Стоп»).",
    "{label} is not available: {reason}": "Модель {label} недоступна: {reason}",
    "Not enough credits: {label} costs {price} {price:credit|credits} per answer and you have {available}. "
    "Add credits on the Top up tab.":
        "Недостаточно кредитов: ответ модели {label} стоит {price} {price:кредит|кредита|кредитов}, а у вас {available}. "
        "Пополните баланс на вкладке «Пополнить».",
    "Stopped.": "Остановлено.",
    "Stopped. Nothing was charged.": "Остановлено. Кредиты не списаны.",
    "The model returned an empty answer. Nothing was charged.": "Модель вернула пустой ответ. Кредиты не списаны.",
    "The database is busy, so this answer was not recorded. Nothing was charged; please try again.":
        "База данных занята, поэтому ответ не записан. Кредиты не списаны; попробуйте снова.",
    "The server's disk is full, so this answer was not recorded. Nothing was charged; please try again later.": "Диск сервера заполнен, поэтому ответ не записан. Кредиты не списаны; попробуйте снова позже.",
    "The database could not be reached, so this answer was not recorded. Nothing was charged; please try again.": "База данных недоступна, поэтому ответ не записан. Кредиты не списаны; попробуйте снова.",
    # the database (errors.py): nothing was written, the same request can succeed later
    "The database is busy; nothing was changed. Please try again.": "База данных занята; ничего не изменено. Попробуйте снова.",
    "The server's disk is full; nothing was changed. Please try again later.": "Диск сервера заполнен; ничего не изменено. Попробуйте снова позже.",
    "The database could not be reached; nothing was changed. Please try again.": "База данных недоступна; ничего не изменено. Попробуйте снова.",
    "{reason} Nothing was charged. (error {error_id})": "{reason} Кредиты не списаны. (ошибка {error_id})",
    "The model failed to answer.": "Модель не смогла ответить.",
    "Enter a title for the chat.": "Введите название чата.",
    "A chat title has at most {n} characters.": "Название чата — не больше {n} {n:символа|символов|символов}.",
    "The title contains an invalid character.": "Название содержит недопустимый символ.",
    "That chat was not found.": "Чат не найден.",
    "Search for at most 200 characters of text.": "Искать можно не больше 200 символов текста.",
    "A page number is a whole number from 1.": "Номер страницы — целое число от 1.",
    # API keys (accounts/keys.py, ui/api_keys.py)
    "A key's name must be text.": "Название ключа должно быть текстом.",
    "A key's name is at most {n} characters.": "Название ключа — не больше {n} {n:символа|символов|символов}.",
    "A key's name cannot contain control characters.": "Название ключа не может содержать управляющие символы.",
    "No API key with id {key_id}.": "Нет ключа API с id {key_id}.",
    "Choose a key to revoke.": "Выберите ключ, который нужно отозвать.",
    # the admin reports (ops/reports.py) and models (inference/engine.py, backends/, ui/admin/models.py)
    "{what} must be a date as YYYY-MM-DD; got {value!r}.": "{what}: нужна дата в виде YYYY-MM-DD; получено {value!r}.",
    "The start date {since} is after the end date {until}.": "Начальная дата {since} позже конечной {until}.",
    "Choose the model to restart.": "Выберите модель для перезапуска.",
    "The {label} model is not available: {reason}": "Модель {label} недоступна: {reason}",
    "The {label} model is not available: {reason}.": "Модель {label} недоступна: {reason}.",
    "The {label} model is shutting down.": "Модель {label} останавливается.",
    "The {label} model is busy; please try again in a moment.": "Модель {label} занята; попробуйте снова чуть позже.",
    "Your message is too long for {label}: it is about {tokens:,} tokens and at most {allowed:,} fit "
    "(roughly {chars:,} characters). Please shorten it.":
        "Сообщение слишком длинное для {label}: в нём около {tokens:,} {tokens:токена|токенов|токенов}, а помещается "
        "не больше {allowed:,} (примерно {chars:,} {chars:символа|символов|символов}). Сократите его.",
    "The conversation could not be formatted for the model.": "Не удалось подготовить разговор для модели.",
    "The model failed while generating; please try again.": "Модель сбилась при генерации ответа; попробуйте снова.",
    "The model stopped unexpectedly.": "Модель неожиданно остановилась.",
    "The {label} worker stopped.": "Процесс модели {label} остановился.",
    "The model server ended the answer early, without finishing it; please try again.":
        "Сервер модели оборвал ответ, не закончив его; попробуйте снова.",
    "The model server sent an answer this app cannot read.":
        "Сервер модели прислал ответ, который это приложение не может прочитать.",
    "The model server ended the answer before it began; if this chat is long, start a new one.":
        "Сервер модели оборвал ответ, не начав его; если чат длинный, начните новый.",
    # a model behind an OpenAI-compatible server (backends/openai.py)
    "The conversation is too long for {label}; start a new chat or shorten your message.": "Разговор слишком длинный для {label}; начните новый чат или сократите сообщение.",
    "The conversation is too long for {label}; start a new chat.": "Разговор слишком длинный для {label}; начните новый чат.",
    "The {label} server is busy; please try again in a moment.": "Сервер модели {label} занят; попробуйте снова чуть позже.",
    "The {label} server refused the request (HTTP {status}); please try again.": "Сервер модели {label} отклонил запрос (HTTP {status}); попробуйте снова.",
    "The {label} server failed while answering; please try again.": "Сервер модели {label} сбился при ответе; попробуйте снова.",
    "The {label} server at {url} is not reachable ({why}); please try again later.": "Сервер модели {label} по адресу {url} недоступен ({why}); попробуйте снова позже.",
    "The {label} server sent nothing for {seconds:g} s, so the answer was abandoned.": "Сервер модели {label} ничего не прислал за {seconds:g} с, поэтому ответ прерван.",
    "The request to the {label} server failed; please try again.": "Запрос к серверу модели {label} не удался; попробуйте снова.",
    # a chat's settings (chats/conversations.py)
    "The system prompt contains an invalid character.": "Системная инструкция содержит недопустимый символ.",
    "A system prompt has at most {n:,} characters.": "Системная инструкция — не длиннее {n:,} символов.",
    # importing chats (chats/documents.py, chats/conversations.py)
    "An imported message cannot be regenerated or edited; send a new message instead.":
        "Импортированное сообщение нельзя получить заново или изменить; отправьте новое сообщение.",
    "The file is {megabytes} MB; the limit is {limit} MB.": "Размер файла — {megabytes} МБ; предел — {limit} МБ.",
    "The file is not UTF-8 text.": "Файл — не текст в кодировке UTF-8.",
    "The file is not valid JSON (line {line}, column {column}).": "Файл — не корректный JSON (строка {line}, столбец {column}).",
    "The file is not valid JSON.": "Файл — не корректный JSON.",
    "This is not a gemma-chat export: the file holds no JSON object.": "Это не экспорт gemma-chat: в файле нет объекта JSON.",
    "This is not a gemma-chat export: its \"format\" is not {format} or {all_format}.":
        "Это не экспорт gemma-chat: его «format» — не {format} и не {all_format}.",
    "\"chats\" must be a list of chats.": "«chats» должен быть списком чатов.",
    "The file has no chats.": "В файле нет чатов.",
    "This account has imported {n:,} messages; an account can import at most {limit:,}.":
        "Эта учётная запись уже импортировала {n:,} {n:сообщение|сообщения|сообщений}; можно не больше {limit:,}.",
    "The file has {n:,} chats; at most {limit:,} can be imported at once.":
        "В файле {n:,} {n:чат|чата|чатов}; за один раз можно импортировать не больше {limit:,}.",
    "The file has more than {limit:,} turns; import fewer chats at once.":
        "В файле больше {limit:,} сообщений; импортируйте меньше чатов за один раз.",
    "Chat {chat}: {reason}": "Чат {chat}: {reason}",
    "Turn {turn}: {reason}": "Сообщение {turn}: {reason}",
    "Chat {chat}, turn {turn}: {reason}": "Чат {chat}, сообщение {turn}: {reason}",
    "This is not a chat: a chat is a JSON object.": "Это не чат: чат — это объект JSON.",
    "This is not a turn: a turn is a JSON object.": "Это не сообщение: сообщение — это объект JSON.",
    "Its \"format\" is not {format}.": "Его «format» — не {format}.",
    "\"turns\" must be a list of turns.": "«turns» должен быть списком сообщений.",
    "The chat has {n:,} turns; at most {limit:,} can be imported.":
        "В чате {n:,} {n:сообщение|сообщения|сообщений}; импортировать можно не больше {limit:,}.",
    "The chat has no \"title\".": "У чата нет названия («title»).",
    "\"{field}\" must be text.": "«{field}» должно быть текстом.",
    "\"{field}\" contains a NUL or an invalid character.": "«{field}» содержит символ NUL или недопустимый символ.",
    "\"{field}\" is {length:,} characters long; the limit is {limit}.":
        "Длина «{field}» — {length:,} {length:символ|символа|символов}; предел — {limit}.",
    "The message is empty.": "Сообщение пустое.",
    "The answer is {length:,} characters long; the limit is {limit:,}.":
        "Длина ответа — {length:,} {length:символ|символа|символов}; предел — {limit:,}.",
    "\"status\" must be one of {statuses}.": "«status» должен быть одним из: {statuses}.",
    "\"model\" must name the model that answered.": "«model» должен называть модель, которая ответила.",
}

LANGUAGES = ("en", "ru")
DEFAULT_LANGUAGE = "en"
NESTED = frozenset({"reason"})  # placeholders that hold a message of their own, translated in turn


def text(language: str, key: str, **params) -> str:
    """A MESSAGES (or label) template in `language`, filled in; English when the language lacks it."""
    table = MESSAGES.get(language) or MESSAGES[DEFAULT_LANGUAGE]
    template = table.get(key) or TRANSLATIONS.get(language, {}).get(key)
    if template is None:
        template = MESSAGES[DEFAULT_LANGUAGE].get(key) or TRANSLATIONS[DEFAULT_LANGUAGE][key]
    return render(template, params)


FOREIGN_BY_ENGLISH = {"ru": RUSSIAN_BY_ENGLISH}  # a service message's template in each language but English


def translated(language: str, message) -> str:
    """A message from the services in `language`: a refusal (GemmaChatError), a Message, or a fixed
    English text. Its template is looked up and filled in with its own parameters, which are never
    parsed from the English; a parameter that is itself a message (`{reason}`) is translated in turn.
    A message the table lacks stays English."""
    if isinstance(message, GemmaChatError):
        message = message.message
    table = FOREIGN_BY_ENGLISH.get(language)
    if table is None or not isinstance(message, str):
        return message
    params = getattr(message, "params", {})
    foreign = table.get(getattr(message, "template", message))
    if foreign is None:
        return message
    params = {
        name: translated(language, value) if name in NESTED or isinstance(value, Message) else value
        for name, value in params.items()
    }
    return render(foreign, params)


_LANGUAGE_RANGE = re.compile(r"\s*([A-Za-z]{1,8}|\*)(?:-[A-Za-z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([0-9.]{1,5}))?\s*")


def language_of(request) -> str:
    """The language for this request's messages: the first of LANGUAGES its Accept-Language prefers.

    Browsers send Accept-Language with every fetch, Gradio's queue calls included; without one (a
    script, a test) the messages are English.
    """
    headers = getattr(request, "headers", None)
    try:
        header = headers.get("accept-language", "") if headers is not None else ""
    except Exception:  # noqa: BLE001 — a request without usable headers speaks the default
        header = ""
    if not isinstance(header, str):
        return DEFAULT_LANGUAGE
    ranked = []
    for position, item in enumerate(header[:512].split(",")[:32]):
        found = _LANGUAGE_RANGE.fullmatch(item)
        if found is None:
            continue
        try:
            quality = float(found.group(2)) if found.group(2) else 1.0
        except ValueError:
            continue
        if quality > 0:
            ranked.append((-quality, position, found.group(1).lower()))
    for _, _, language in sorted(ranked):
        if language in LANGUAGES:
            return language
        if language == "*":
            return DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


def columns(language: str, keys: list[str]) -> list[str]:
    """A table's headers in `language`."""
    return [text(language, key) for key in keys]


def code_name(language: str, group: str, code) -> str:
    """A code a table shows (a status, a ledger kind) in `language`; an unknown code as it is."""
    key = f"{group}_{code}"
    return text(language, key) if isinstance(code, str) and key in MESSAGES[DEFAULT_LANGUAGE] else code
