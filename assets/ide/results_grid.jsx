// The IDE's results grid: AG Grid Community with the Infinite Row Model.
//
// The result stays on the server (services/result_store.py). The grid asks
// POST /api/ide/results/<id>/rows for one block of rows at a time, with its sort and filter
// models, and receives `{"total": n, "rows": [[...], ...]}` (rows as arrays, in column order).
// Only the rows on screen are in the DOM. JSON cells show compactly with a button opening them
// formatted. `onRowsShown({result_id, shown, filtered})` reports how many rows match the grid's
// filters whenever that changes (the row badge says "1,234 of 100,000 rows").
import { createElement, useCallback, useMemo, useRef, useState } from "react";
import { AgGridReact } from "ag-grid-react";
import {
  ColumnAutoSizeModule,
  InfiniteRowModelModule,
  ModuleRegistry,
  NumberFilterModule,
  TextFilterModule,
  TooltipModule,
  CellStyleModule,
  themeQuartz,
  colorSchemeDark,
} from "ag-grid-community";
import env from "$/env.json";
import { getBackendURL } from "$/utils/state";

// Sorting and column resizing are part of AG Grid's core; these add the rest we use.
ModuleRegistry.registerModules([
  InfiniteRowModelModule, TextFilterModule, NumberFilterModule, ColumnAutoSizeModule, TooltipModule, CellStyleModule,
]);

const BLOCK_SIZE = 200;
const TEXT_FILTERS = ["contains", "notContains", "equals", "notEqual", "startsWith", "endsWith", "blank", "notBlank"];
const NUMBER_FILTERS = [
  "equals", "notEqual", "lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual", "inRange",
  "blank", "notBlank",
];

function apiUrl(path) {
  const url = getBackendURL(env.PING);
  url.pathname = path;
  url.search = "";
  return url.toString();
}

// Exports are plain downloads from the backend (another port in dev mode).
if (typeof window !== "undefined") {
  window.__stackqlApiUrl = apiUrl;
}

function prettyJson(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch (_err) {
    return text;
  }
}

function JsonCell(props) {
  if (props.value === null || props.value === undefined) {
    return createElement("span", { className: "sq-null" }, props.data ? "NULL" : "");
  }
  return createElement(
    "span",
    { className: "sq-json" },
    createElement(
      "button",
      {
        type: "button",
        className: "sq-json-open",
        title: "Show formatted",
        "data-testid": "ide-json-open",
        onClick: () => props.context.openJson(props.colDef.headerName, props.value),
      },
      "{…}",
    ),
    createElement("span", { className: "sq-json-text" }, props.value),
  );
}

const GRID_CSS = `
.sq-null { color: var(--gray-9, #999); font-style: italic; }
.sq-json { display: flex; gap: 6px; align-items: center; min-width: 0; }
.sq-json-text { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; font-family: ui-monospace, monospace; font-size: 12px; }
.sq-json-open { border: 1px solid var(--gray-7, #bbb); border-radius: 4px; background: transparent; cursor: pointer;
  font-size: 11px; padding: 0 4px; line-height: 16px; color: inherit; flex: none; }
.sq-json-view { position: fixed; inset: 0; background: rgba(0,0,0,.35); z-index: 1000; display: flex;
  align-items: center; justify-content: center; }
.sq-json-view > div { background: var(--color-panel-solid, #fff); color: var(--gray-12, #111); width: min(900px, 90vw);
  max-height: 80vh; display: flex; flex-direction: column; border-radius: 8px; box-shadow: 0 10px 40px rgba(0,0,0,.3); }
.sq-json-view header { display: flex; justify-content: space-between; align-items: center; padding: 10px 14px;
  border-bottom: 1px solid var(--gray-5, #ddd); font-weight: 600; }
.sq-json-view pre { margin: 0; padding: 14px; overflow: auto; font-size: 12px; }
.sq-grid-error { padding: 8px 12px; color: var(--red-11, #b00); }
`;

export function ResultsGrid({ resultId, columns, columnTypes, rowCount, dark, height, onRowsShown, ...rest }) {
  const [jsonView, setJsonView] = useState(null);
  const [loadError, setLoadError] = useState("");
  // The last count reported through onRowsShown (one event per change, not one per block).
  const reported = useRef("");
  const report = useRef(onRowsShown);
  report.current = onRowsShown;

  const datasource = useMemo(() => ({
    getRows: async (params) => {
      try {
        const response = await fetch(apiUrl(`/api/ide/results/${encodeURIComponent(resultId)}/rows`), {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({
            start: params.startRow,
            end: params.endRow,
            sort: params.sortModel,
            filter: params.filterModel,
          }),
        });
        const data = await response.json();
        if (!response.ok) {
          setLoadError(data.error || `The rows could not be loaded (HTTP ${response.status}).`);
          params.failCallback();
          return;
        }
        setLoadError("");
        params.successCallback(data.rows, data.total);
        const filtered = Object.keys(params.filterModel || {}).length > 0;
        const key = `${resultId}|${data.total}|${filtered}`;
        if (reported.current !== key && report.current) {
          reported.current = key;
          report.current({ result_id: resultId, shown: data.total, filtered });
        }
      } catch (_err) {
        setLoadError("The rows could not be loaded: the server did not answer. Retry in a moment.");
        params.failCallback();
      }
    },
  }), [resultId]);

  const columnDefs = useMemo(() => (columns || []).map((name, i) => {
    const type = (columnTypes || [])[i] || "text";
    const numeric = type === "number";
    return {
      colId: String(i),
      headerName: name,
      headerTooltip: `${name} (${type})`,
      valueGetter: (p) => (p.data ? p.data[i] : undefined),
      valueFormatter: (p) => (p.value === null && p.data ? "NULL" : p.value),
      cellClassRules: { "sq-null": (p) => p.value === null },
      cellRenderer: type === "json" ? JsonCell : undefined,
      tooltipValueGetter: type === "json" ? undefined : (p) => (p.value && p.value.length > 40 ? p.value : undefined),
      type: numeric ? "rightAligned" : undefined,
      filter: numeric ? "agNumberColumnFilter" : "agTextColumnFilter",
      filterParams: {
        filterOptions: numeric ? NUMBER_FILTERS : TEXT_FILTERS,
        maxNumConditions: 2,
        debounceMs: 300,
        buttons: ["reset"],
      },
      sortable: true,
      resizable: true,
      minWidth: 80,
      width: type === "json" ? 260 : numeric ? 120 : 180,
    };
  }), [columns, columnTypes]);

  const theme = useMemo(
    () => (dark ? themeQuartz.withPart(colorSchemeDark) : themeQuartz).withParams({ fontSize: 13, spacing: 5 }),
    [dark],
  );
  const context = useMemo(() => ({ openJson: (title, text) => setJsonView({ title, text: prettyJson(text) }) }), []);
  const closeJson = useCallback(() => setJsonView(null), []);

  return createElement(
    "div",
    { ...rest, style: { height: height || "420px", width: "100%", display: "flex", flexDirection: "column" } },
    createElement("style", null, GRID_CSS),
    loadError
      ? createElement("div", { className: "sq-grid-error", "data-testid": "ide-results-error", role: "alert" }, loadError)
      : null,
    createElement(
      "div",
      { style: { flex: 1, minHeight: 0 } },
      createElement(AgGridReact, {
        key: resultId,
        theme,
        rowModelType: "infinite",
        datasource,
        columnDefs,
        context,
        cacheBlockSize: BLOCK_SIZE,
        maxBlocksInCache: 25,
        infiniteInitialRowCount: Math.min(rowCount || 1, BLOCK_SIZE),
        maxConcurrentDatasourceRequests: 2,
        blockLoadDebounceMillis: 20,
        rowBuffer: 10,
        enableCellTextSelection: true,
        ensureDomOrder: true,
        tooltipShowDelay: 400,
        multiSortKey: "ctrl",
      }),
    ),
    jsonView
      ? createElement(
        "div",
        { className: "sq-json-view", "data-testid": "ide-json-view", onClick: closeJson },
        createElement(
          "div",
          { onClick: (e) => e.stopPropagation() },
          createElement(
            "header",
            null,
            createElement("span", null, jsonView.title),
            createElement("button", { type: "button", className: "sq-json-open", onClick: closeJson, "data-testid": "ide-json-close" }, "Close"),
          ),
          createElement("pre", null, jsonView.text),
        ),
      )
      : null,
  );
}
