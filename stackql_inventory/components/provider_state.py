"""State of the Providers page: mappings (names only), their status, connection tests and the dialogs."""

# No secret value ever lands in a var here: the value field is an uncontrolled password input whose
# text reaches `save_value` once, in the form's submit payload, and goes straight to the service.

from __future__ import annotations

import itertools
from functools import partial
from typing import Any

import reflex as rx

from stackql_inventory.services import provider_presets, providers
from stackql_inventory.services.errors import UserFacingError
from stackql_inventory.services.identity import Identity
from stackql_inventory.state.app_state import current_identity, list_error

_NEW_LINE_IDS = itertools.count(1)


def _line(env_var: str = "", scope: str = "", key: str = "", hint: str = "") -> dict[str, str]:
    # `lid` keys the line's inputs: a line keeps what was typed in it while others come and go.
    return {"lid": f"l{next(_NEW_LINE_IDS)}", "env_var": env_var, "scope": scope, "key": key, "hint": hint}


def _field(form_data: dict[str, Any], name: str) -> str:
    value = form_data.get(name, "")
    return value if isinstance(value, str) else ""


class ProvidersState(rx.State):
    """Credential mappings per provider, their secret status, connection tests, and the page's dialogs."""

    # One dict per mapping: id, provider, env_var, scope, key, status, status_label, status_message, cli.
    mappings: list[dict[str, str]] = []
    # One dict per provider with mappings: provider, title, count, notes, test_state, test_summary, test_detail.
    cards: list[dict[str, str]] = []
    # Probe parameters of every card: provider, name, label, default, hint.
    test_params: list[dict[str, str]] = []
    # Why the list could not be loaded ('' when fine; database problems go to the banner).
    load_error: str = ""
    # Where secret values live: 'local' (value field) or 'databricks' (CLI instructions).
    backend: str = "local"
    # Which validation is running ('' none, '*' all, else a provider).
    validating: str = ""
    # The outcome of the last action, shown under the heading (kept inline: toasts would cover row buttons).
    notice: str = ""
    # 'success', 'warning' or 'error': how the notice is coloured.
    notice_kind: str = "success"

    # --- mapping form (new / edit) ---
    # Whether the mapping dialog is open.
    form_open: bool = False
    # 'new' (one or more lines, presets offered) or 'edit' (one mapping).
    form_mode: str = "new"
    # Id of the mapping being edited ('' for new).
    form_edit_id: str = ""
    # Provider name the form opens with.
    form_provider: str = ""
    # Preset chosen in the picker ('' none).
    form_preset: str = ""
    # Lines of the form: lid, env_var, scope, key, hint (initial values; the inputs hold the edits).
    form_lines: list[dict[str, str]] = []
    # Bumped to remount the inputs with new initial values (after a preset is chosen).
    form_version: int = 0
    # Optional variables and notes of the chosen preset.
    form_notes: str = ""
    # The form's validation message ('' none).
    form_error: str = ""
    # True while the form is being saved.
    form_saving: bool = False

    # --- value dialog (local backend) ---
    # Whether the set-value dialog is open.
    value_open: bool = False
    # Mapping whose value is being set.
    value_mapping_id: str = ""
    # What the value is for, e.g. "AWS_SECRET_ACCESS_KEY of aws → secret inv/aws-key".
    value_target: str = ""
    # Why the value was not saved ('' none).
    value_error: str = ""
    # True while the value is being saved.
    value_saving: bool = False

    # --- delete confirmation ---
    # Mapping waiting for confirmation ('' none).
    delete_id: str = ""
    # What would be deleted, for the confirmation text.
    delete_target: str = ""

    # Backend-only: last status per mapping id, kept while its scope/key stay the same.
    _statuses: dict[int, providers.MappingStatus] = {}
    # Backend-only: last test result per provider (state, summary, detail).
    _tests: dict[str, tuple[str, str, str]] = {}
    # Backend-only: the mappings as last loaded.
    _views: list[providers.MappingView] = []

    # ------------------------------------------------------------------------------------------ helpers
    def _actor(self) -> Identity:
        return current_identity(self)

    def _rebuild(self) -> None:
        """Derive the rendered vars from the loaded mappings, statuses and test results."""
        rows, cards, params = [], [], []
        for m in self._views:
            st = self._statuses.get(m.id)
            rows.append({
                "id": str(m.id), "provider": m.provider, "env_var": m.env_var_name,
                "scope": m.secret_scope, "key": m.secret_key,
                "status": st.state if st else "unchecked",
                "status_label": st.label if st else "not checked",
                "status_message": st.message if st else "",
                "cli": providers.cli_put_command(m.secret_scope, m.secret_key),
            })
        for name in sorted({m.provider for m in self._views}):
            preset = provider_presets.preset(name)
            state, summary, detail = self._tests.get(name, ("", "", ""))
            cards.append({
                "provider": name, "title": preset.title if preset else "custom provider",
                "count": str(sum(m.provider == name for m in self._views)),
                "test_state": state, "test_summary": summary, "test_detail": detail,
            })
            for p in preset.probe.params if preset else ():
                params.append({"provider": name, "name": p.name, "label": p.label, "default": p.default,
                               "hint": p.hint})
        self.mappings, self.cards, self.test_params = rows, cards, params

    def _set_statuses(self, statuses: list[providers.MappingStatus]) -> None:
        for st in statuses:
            self._statuses[st.mapping_id] = st

    def _forget_stale(self, views: list[providers.MappingView]) -> None:
        """Drop statuses of mappings that are gone or now point elsewhere."""
        before = {m.id: (m.secret_scope, m.secret_key) for m in self._views}
        after = {m.id: (m.secret_scope, m.secret_key) for m in views}
        self._statuses = {i: s for i, s in self._statuses.items() if i in after and before.get(i) == after[i]}

    async def _reload(self) -> None:
        """Load mappings (shown at once), then check them (metadata only); call outside the lock."""
        views = await rx.run_in_thread(providers.list_mappings)
        async with self:
            self._forget_stale(views)
            self._views = views
            self.load_error = ""
            self._rebuild()
        statuses = await rx.run_in_thread(partial(providers.validate, items=views))
        async with self:
            self._set_statuses(statuses)
            self._rebuild()

    # ------------------------------------------------------------------------------------------ load
    @rx.event(background=True)
    async def load(self):
        """Load every mapping and its status."""
        async with self:
            self.backend = providers.backend_kind()
        try:
            await self._reload()
        except UserFacingError as e:
            problem = await list_error(self, e)
            async with self:
                self.load_error = problem

    # ------------------------------------------------------------------------------------------ form
    @rx.event
    def open_new(self):
        """Open the form for new mappings (one empty line in the default scope)."""
        self.form_mode, self.form_edit_id, self.form_error, self.form_notes = "new", "", "", ""
        self.form_provider, self.form_preset = "", ""
        self.form_lines = [_line(scope=providers.default_scope())]
        self.form_version += 1
        self.form_open = True

    @rx.event
    def open_edit(self, mapping_id: str):
        """Open the form on one mapping."""
        m = next((v for v in self._views if str(v.id) == mapping_id), None)
        if m is None:
            self.notice, self.notice_kind = "That mapping no longer exists. Reload the page.", "error"
            return
        self.form_mode, self.form_edit_id, self.form_error, self.form_notes = "edit", mapping_id, "", ""
        self.form_provider, self.form_preset = m.provider, ""
        self.form_lines = [_line(m.env_var_name, m.secret_scope, m.secret_key)]
        self.form_version += 1
        self.form_open = True

    @rx.event
    def apply_preset(self, provider: str):
        """Fill the form with a preset's provider name and expected variables."""
        preset = provider_presets.preset(provider)
        if preset is None:
            return
        descriptions = {v.name: v.description for v in preset.variables}
        self.form_preset, self.form_provider, self.form_error = provider, provider, ""
        self.form_lines = [_line(i.env_var_name, i.secret_scope, i.secret_key, descriptions[i.env_var_name])
                           for i in providers.draft_from_preset(provider)]
        optional = "; ".join(f"{v.name} ({v.description.rstrip('.')})" for v in preset.optional_variables)
        notes = [f"Optional: {optional}. Add a line for it if you need it." if optional else "", preset.notes]
        self.form_notes = " ".join(n for n in notes if n)
        self.form_version += 1

    @rx.event
    def add_line(self):
        """Add an empty variable line (in the scope of the last line)."""
        scope = self.form_lines[-1]["scope"] if self.form_lines else ""
        self.form_lines = [*self.form_lines, _line(scope=scope)]

    @rx.event
    def remove_line(self, lid: str):
        """Remove one variable line (the form keeps at least one)."""
        if len(self.form_lines) > 1:
            self.form_lines = [line for line in self.form_lines if line["lid"] != lid]

    @rx.event
    def set_form_open(self, is_open: bool):
        """Close the form (Escape, outside click or Cancel)."""
        if not self.form_saving:
            self.form_open = is_open

    @rx.event(background=True)
    async def save_form(self, form_data: dict[str, Any]):
        """Validate and save the form's lines; on any error nothing is saved and the form stays open."""
        async with self:
            if self.form_saving:
                return
            self.form_saving, self.form_error = True, ""
            actor, mode, edit_id = self._actor(), self.form_mode, self.form_edit_id
            items = [providers.MappingInput(_field(form_data, f"env_var__{line['lid']}"),
                                            _field(form_data, f"scope__{line['lid']}"),
                                            _field(form_data, f"key__{line['lid']}")) for line in self.form_lines]
        provider = _field(form_data, "provider")
        try:
            if mode == "edit":
                await rx.run_in_thread(partial(providers.update_mapping, actor, int(edit_id), provider, items[0]))
                notice = f"Saved {items[0].env_var_name.strip()} of {provider.strip()}."
            else:
                views = await rx.run_in_thread(partial(providers.add_mappings, actor, provider, items))
                notice = f"Mapped {len(views)} variable{'s' if len(views) != 1 else ''} of {views[0].provider}."
        except UserFacingError as e:
            async with self:
                self.form_saving, self.form_error = False, e.message
            return
        async with self:
            self.form_saving, self.form_open = False, False
            self.notice, self.notice_kind = notice, "success"
        await self._reload_quietly()

    async def _reload_quietly(self) -> None:
        try:
            await self._reload()
        except UserFacingError as e:
            problem = await list_error(self, e)
            async with self:
                self.load_error = problem

    # ------------------------------------------------------------------------------------------ values
    @rx.event
    def open_value(self, mapping_id: str):
        """Open the set-value dialog for one mapping (local backend)."""
        m = next((v for v in self._views if str(v.id) == mapping_id), None)
        if m is None:
            self.notice, self.notice_kind = "That mapping no longer exists. Reload the page.", "error"
            return
        self.value_mapping_id, self.value_error = mapping_id, ""
        self.value_target = f"{m.env_var_name} of {m.provider} → secret {m.secret_scope}/{m.secret_key}"
        self.value_open = True

    @rx.event
    def set_value_open(self, is_open: bool):
        """Close the set-value dialog."""
        if not self.value_saving:
            self.value_open = is_open

    @rx.event(background=True)
    async def save_value(self, form_data: dict[str, Any]):
        """Write the submitted value to the secret (never kept in state) and show the mapping's new status."""
        value = _field(form_data, "value")
        async with self:
            if self.value_saving:
                return
            self.value_saving, self.value_error = True, ""
            actor, mapping_id = self._actor(), int(self.value_mapping_id)
        try:
            status = await rx.run_in_thread(partial(providers.set_value, actor, mapping_id, value))
        except UserFacingError as e:
            async with self:
                self.value_saving, self.value_error = False, e.message
            return
        async with self:
            self.value_saving, self.value_open = False, False
            self._set_statuses([status])
            self._rebuild()
            self.notice = f"Saved the value of {status.env_var_name}. It is not shown again."
            self.notice_kind = "success"
        # Other mappings may read the same secret: refresh every status.
        await self._reload_quietly()

    # ------------------------------------------------------------------------------------------ checks
    @rx.event(background=True)
    async def validate(self, provider: str):
        """Check the secrets of one provider's mappings ('*' = all) without reading any value."""
        async with self:
            if self.validating:
                return
            self.validating = provider
        try:
            statuses = await rx.run_in_thread(partial(providers.validate, None if provider == "*" else provider))
        except UserFacingError as e:
            async with self:
                self.validating = ""
                self.notice, self.notice_kind = e.message, "error"
            return
        bad = sum(s.state != "ok" for s in statuses)
        async with self:
            self.validating = ""
            self._set_statuses(statuses)
            self._rebuild()
            if bad:
                self.notice = f"{bad} of {len(statuses)} credentials need attention: see the status of each row."
                self.notice_kind = "warning"
            else:
                self.notice, self.notice_kind = f"All {len(statuses)} credentials are in place.", "success"

    @rx.event(background=True)
    async def test_connection(self, form_data: dict[str, Any]):
        """Run the provider's test queries with its credentials (batch path) and show what came back."""
        provider = _field(form_data, "provider")
        params = {k: v for k, v in form_data.items() if k != "provider" and isinstance(v, str)}
        async with self:
            if self._tests.get(provider, ("",))[0] == "running":
                return
            self._tests[provider] = ("running", "Running SHOW SERVICES and a test query…", "")
            self._rebuild()
        try:
            result = await rx.run_in_thread(partial(providers.test_connection, provider, params))
            outcome = ("ok" if result.ok else "failed", result.summary, result.detail)
        except UserFacingError as e:
            outcome = ("failed", e.message, "")
        async with self:
            self._tests[provider] = outcome
            self._rebuild()

    # ------------------------------------------------------------------------------------------ delete
    @rx.event
    def ask_delete(self, mapping_id: str):
        """Ask for confirmation before deleting a mapping."""
        m = next((v for v in self._views if str(v.id) == mapping_id), None)
        if m is None:
            self.notice, self.notice_kind = "That mapping no longer exists. Reload the page.", "error"
            return
        self.delete_id = mapping_id
        self.delete_target = f"{m.env_var_name} of {m.provider} (secret {m.secret_scope}/{m.secret_key})"

    @rx.event
    def dismiss_notice(self):
        """Hide the notice."""
        self.notice = ""

    @rx.event
    def cancel_delete(self):
        """Keep the mapping."""
        self.delete_id, self.delete_target = "", ""

    @rx.event(background=True)
    async def confirm_delete(self):
        """Delete the mapping waiting for confirmation (its secret is kept)."""
        async with self:
            mapping_id, actor = self.delete_id, self._actor()
            self.delete_id, self.delete_target = "", ""
        if not mapping_id:
            return
        try:
            view = await rx.run_in_thread(partial(providers.delete_mapping, actor, int(mapping_id)))
        except UserFacingError as e:
            async with self:
                self.notice, self.notice_kind = e.message, "error"
            return
        async with self:
            self.notice = (f"Removed {view.env_var_name} of {view.provider}. The secret "
                           f"{view.secret_scope}/{view.secret_key} was kept.")
            self.notice_kind = "success"
        await self._reload_quietly()
