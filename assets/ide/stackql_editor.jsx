// The IDE's Monaco editor, loaded from the bundled `monaco-editor` package (never a CDN).
//
// @monaco-editor/react's loader fetches Monaco from a CDN unless it is handed a Monaco instance
// first: `loader.config({ monaco })` runs before the editor mounts. Monaco is imported lazily in
// the browser (the build-time prerender never touches `window`), with the SQL tokenizer extended
// by StackQL's words, a completion provider answered by the app's /api/ide/complete endpoint, and
// Ctrl/Cmd+Enter bound to "run the selection, else the statement under the cursor".
//
// State sync: typing is sent to the backend debounced (and flushed on blur, run and unmount);
// the backend's `value` is applied only when its `valueRevision` changes (a server-side edit such
// as opening a saved query) or while the user has not typed since mount (hydration), so the echo
// of an older keystroke never overwrites newer text.
import { createElement, useEffect, useRef, useState } from "react";
import Editor, { loader } from "@monaco-editor/react";
import env from "$/env.json";
import { getBackendURL } from "$/utils/state";

const STACKQL_KEYWORDS = [
  "SHOW", "DESCRIBE", "DESC", "REGISTRY", "PULL", "LIST", "EXTENDED", "METHODS", "PROVIDERS",
  "SERVICES", "RESOURCES", "EXEC", "INSERT", "VERSION", "LIKE",
];

// Offered by the completion provider when the cursor is not in a table or column position.
const COMPLETION_KEYWORDS = [
  "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "IS NULL", "IS NOT NULL", "LIKE", "JOIN",
  "LEFT JOIN", "INNER JOIN", "ON", "AS", "DISTINCT", "GROUP BY", "ORDER BY", "HAVING", "LIMIT",
  "COUNT(*)", "SHOW PROVIDERS", "SHOW SERVICES IN", "SHOW RESOURCES IN", "SHOW METHODS IN",
  "DESCRIBE", "DESCRIBE EXTENDED", "REGISTRY LIST", "REGISTRY PULL", "json_extract",
];

const DEBOUNCE_MS = 300;

export function apiUrl(path) {
  const url = getBackendURL(env.PING);
  url.pathname = path;
  url.search = "";
  return url.toString();
}

// Python counts offsets in code points, Monaco in UTF-16 units.
function codePointOffset(text, utf16Offset) {
  return Array.from(text.slice(0, utf16Offset)).length;
}

let monacoPromise = null;

function loadMonaco() {
  if (monacoPromise === null) {
    monacoPromise = Promise.all([
      import("monaco-editor/esm/vs/editor/edcore.main.js"),
      import("monaco-editor/esm/vs/basic-languages/sql/sql.js"),
      import("monaco-editor/esm/vs/editor/editor.worker?worker"),
    ]).then(([monaco, sql, worker]) => {
      self.MonacoEnvironment = { getWorker: () => new worker.default() };
      registerStackql(monaco, sql);
      loader.config({ monaco });
      return monaco;
    });
  }
  return monacoPromise;
}

function registerStackql(monaco, sql) {
  monaco.languages.register({ id: "stackql", aliases: ["StackQL", "stackql"] });
  monaco.languages.setLanguageConfiguration("stackql", sql.conf);
  const keywords = Array.from(new Set([...sql.language.keywords, ...STACKQL_KEYWORDS]));
  monaco.languages.setMonarchTokensProvider("stackql", { ...sql.language, keywords });
  const kinds = {
    provider: monaco.languages.CompletionItemKind.Module,
    service: monaco.languages.CompletionItemKind.Folder,
    resource: monaco.languages.CompletionItemKind.Class,
    column: monaco.languages.CompletionItemKind.Field,
  };
  monaco.languages.registerCompletionItemProvider("stackql", {
    triggerCharacters: ["."],
    async provideCompletionItems(model, position, _context, token) {
      const word = model.getWordUntilPosition(position);
      const range = new monaco.Range(position.lineNumber, word.startColumn, position.lineNumber, word.endColumn);
      const text = model.getValue();
      const offset = codePointOffset(text, model.getOffsetAt(position));
      let data = { kind: "keyword", items: [] };
      const controller = new AbortController();
      token.onCancellationRequested(() => controller.abort());
      try {
        const response = await fetch(apiUrl("/api/ide/complete"), {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ text, offset }),
          signal: controller.signal,
        });
        if (response.ok) data = await response.json();
      } catch (_err) {
        // Completion is a convenience: a slow or failed lookup never gets in the way of typing.
      }
      const suggestions = data.items.map((item, i) => ({
        label: item.label,
        kind: kinds[item.kind] ?? monaco.languages.CompletionItemKind.Text,
        detail: item.detail || undefined,
        documentation: item.documentation || undefined,
        insertText: item.insert_text || item.label,
        sortText: String(i).padStart(5, "0"),
        range,
      }));
      if (data.kind === "keyword" || data.kind === "column") {
        for (const kw of COMPLETION_KEYWORDS) {
          suggestions.push({
            label: kw, kind: monaco.languages.CompletionItemKind.Keyword, insertText: kw,
            sortText: "z" + kw, range,
          });
        }
      }
      return { suggestions };
    },
  });
}

export function StackqlEditor({
  value, valueRevision, onChange, onRun, theme, height, width, options, ...rest
}) {
  const [monaco, setMonaco] = useState(null);
  const editorRef = useRef(null);
  const timer = useRef(null);
  const dirty = useRef(false);
  const appliedRevision = useRef(valueRevision);
  const handlers = useRef({ onChange, onRun });
  handlers.current = { onChange, onRun };

  useEffect(() => {
    let live = true;
    loadMonaco().then((m) => live && setMonaco(m));
    return () => { live = false; };
  }, []);

  const send = () => {
    if (timer.current !== null) {
      clearTimeout(timer.current);
      timer.current = null;
    }
    const editor = editorRef.current;
    if (editor && handlers.current.onChange) handlers.current.onChange(editor.getValue());
  };
  const flush = () => { if (timer.current !== null) send(); };

  const run = () => {
    const editor = editorRef.current;
    if (!editor) return;
    flush();
    const model = editor.getModel();
    const text = model.getValue();
    const selection = editor.getSelection();
    const selected = selection && !selection.isEmpty() ? model.getValueInRange(selection) : "";
    const offset = codePointOffset(text, model.getOffsetAt(editor.getPosition()));
    if (handlers.current.onRun) handlers.current.onRun({ text, selection: selected, offset });
  };

  const insert = (snippet) => {
    const editor = editorRef.current;
    if (!editor) return;
    const selection = editor.getSelection();
    editor.pushUndoStop();
    editor.executeEdits("insert", [{ range: selection, text: snippet, forceMoveMarkers: true }]);
    editor.pushUndoStop();
    editor.focus();
  };

  // A server-side edit (new revision), or hydration before the user typed: show the backend's text.
  useEffect(() => {
    const editor = editorRef.current;
    if (!editor || value === undefined || value === null) return;
    const revised = valueRevision !== appliedRevision.current;
    appliedRevision.current = valueRevision;
    if (value === editor.getValue()) return;
    if (!revised && dirty.current) return;
    if (timer.current !== null) {
      clearTimeout(timer.current);
      timer.current = null;
    }
    const model = editor.getModel();
    editor.pushUndoStop();
    editor.executeEdits("state", [{ range: model.getFullModelRange(), text: value }]);
    editor.pushUndoStop();
  }, [value, valueRevision, monaco]);

  useEffect(() => () => {
    flush();
    if (window.__stackqlIde && window.__stackqlIde.owner === editorRef) delete window.__stackqlIde;
  }, []);

  const onMount = (editor, m) => {
    editorRef.current = editor;
    editor.addCommand(m.KeyMod.CtrlCmd | m.KeyCode.Enter, run);
    editor.onDidBlurEditorText(flush);
    window.__stackqlIde = {
      owner: editorRef, run, insert, flush, focus: () => editor.focus(), value: () => editor.getValue(),
    };
  };

  const handleChange = (text, event) => {
    if (event && !event.isFlush) dirty.current = true;
    if (timer.current !== null) clearTimeout(timer.current);
    timer.current = setTimeout(send, DEBOUNCE_MS);
  };

  if (monaco === null) {
    return createElement(
      "div",
      { style: { height, width, display: "flex", alignItems: "center", padding: "0 1rem", color: "#888" },
        "data-editor-state": "loading" },
      "Loading editor…",
    );
  }
  return createElement(Editor, {
    ...rest,
    height,
    width,
    theme,
    language: "stackql",
    defaultValue: value ?? "",
    onChange: handleChange,
    onMount,
    options: {
      minimap: { enabled: false },
      fontSize: 13,
      tabSize: 2,
      scrollBeyondLastLine: false,
      automaticLayout: true,
      wordBasedSuggestions: "off",
      quickSuggestions: { other: true, comments: false, strings: false },
      fixedOverflowWidgets: true,
      ...(options || {}),
    },
  });
}
