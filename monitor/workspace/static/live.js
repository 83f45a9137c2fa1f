// Live updates of the workspace's alert list (/workspace/alerts).
//
// Reads the server-sent events of /workspace/alerts/events (monitor/workspace/live.py):
// each "alert" event carries one row as JSON (or {"id", "remove": true} for an alert that
// left the state the list is filtered on); the row is inserted (new alert, announced
// in the page's role="status" region) or updated in place, and kept in the list's order
// (its "order" string: open first, then by severity, oldest first). Text only ever goes
// through textContent and attributes through setAttribute: no data reaches innerHTML.
// A row's recovery badge ("recovered", "abandoned": its "recovery" and "recovery_text") is
// added, changed or taken away with the row, as templates/recovery_badge.html writes it.
// A "signed-out" event ends the stream. Without this script the page still works: reload.
"use strict";

(function () {
  var table = document.getElementById("alerts");
  var status = document.getElementById("live-status");
  var empty = document.getElementById("no-alerts");
  if (!table || !status || !window.EventSource) {
    return;
  }
  var body = table.tBodies[0];
  // The columns, in the table's order: the first holds the link to the alert; a team
  // lead's list (data-team) has the manager's name second.
  var COLUMNS = table.hasAttribute("data-team")
    ? ["customer_name", "manager_name", "tier", "severity_text", "state_text", "event_count", "since"]
    : ["customer_name", "tier", "severity_text", "state_text", "event_count", "since"];
  var SEVERITY = COLUMNS.indexOf("severity_text");

  function findRow(alertId) {
    for (var i = 0; i < body.rows.length; i += 1) {
      if (body.rows[i].getAttribute("data-alert-id") === alertId) {
        return body.rows[i];
      }
    }
    return null;
  }

  // The badge after the row's link: a space, then <span class="badge badge-STATUS">.
  function badge(cell, row) {
    var span = cell.querySelector("span.badge");
    if (!row.recovery) {
      if (span) {
        if (span.previousSibling && span.previousSibling.nodeType === Node.TEXT_NODE) {
          cell.removeChild(span.previousSibling);
        }
        cell.removeChild(span);
      }
      return;
    }
    if (!span) {
      span = document.createElement("span");
      cell.appendChild(document.createTextNode(" "));
      cell.appendChild(span);
    }
    span.className = "badge badge-" + row.recovery;
    span.textContent = row.recovery_text;
  }

  function fill(tr, row) {
    tr.className = row.open ? "open" : "done";
    tr.setAttribute("data-alert-id", row.id);
    tr.setAttribute("data-order", row.order);
    while (tr.cells.length < COLUMNS.length) {
      tr.appendChild(document.createElement("td"));
    }
    var link = tr.cells[0].querySelector("a");
    if (!link) {
      link = document.createElement("a");
      tr.cells[0].appendChild(link);
    }
    link.setAttribute("href", row.url);
    link.textContent = row.customer_name;
    badge(tr.cells[0], row);
    for (var c = 1; c < COLUMNS.length; c += 1) {
      tr.cells[c].textContent = String(row[COLUMNS[c]]);
    }
    tr.cells[SEVERITY].className = "sev-" + row.severity;
  }

  // Moves tr to its place by data-order, only if it is out of place (moving a row
  // would take the keyboard focus away from its link).
  function place(tr) {
    var order = tr.getAttribute("data-order");
    var before = tr.previousElementSibling;
    var after = tr.nextElementSibling;
    if (tr.parentNode === body &&
        (!before || before.getAttribute("data-order") <= order) &&
        (!after || after.getAttribute("data-order") >= order)) {
      return;
    }
    var next = null;
    for (var i = 0; i < body.rows.length; i += 1) {
      var other = body.rows[i];
      if (other !== tr && other.getAttribute("data-order") > order) {
        next = other;
        break;
      }
    }
    body.insertBefore(tr, next);
  }

  var source = new EventSource(table.getAttribute("data-events"));
  source.addEventListener("alert", function (event) {
    var row = JSON.parse(event.data);
    var tr = findRow(row.id);
    if (row.remove) { // it left the state this list is filtered on
      if (tr !== null) {
        body.removeChild(tr);
      }
      return;
    }
    var isNew = tr === null;
    if (isNew) {
      tr = document.createElement("tr");
    }
    fill(tr, row);
    place(tr);
    if (isNew) {
      table.hidden = false;
      if (empty) {
        empty.hidden = true;
      }
      status.textContent = status.getAttribute("data-new-alert") + ": " + row.customer_name +
        " (" + row.severity + ")";
    }
  });
  source.addEventListener("signed-out", function () {
    source.close();
    status.textContent = status.getAttribute("data-signed-out");
  });
})();
