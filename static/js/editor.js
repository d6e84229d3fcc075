/* The pipeline editor's small scripts (templates/pipelines/htmx/editor_form.html).

   Everything here improves a page that works without it: dragging a card (SortableJS)
   renumbers the hidden `step-<i>-order` inputs and the visible numbers, the same way the
   server numbers the cards after Up or Down; Delete asks first; a change marks the form
   unsaved; a run button asks before running while edits are unsaved (runs use the saved
   steps); after a failed save the first error is brought into view. The form is swapped
   whole by HTMX, so the set-up runs again after a swap. */
(function () {
  "use strict";

  function cardsOf(list) {
    return Array.from(list.querySelectorAll(":scope > .step-card"));
  }

  function renumber(list) {
    const cards = cardsOf(list);
    cards.forEach(function (card, position) {
      const number = String(position + 1);
      card.querySelector("input.step-order").value = number;
      card.querySelectorAll(".step-number, .step-number-text").forEach(function (element) {
        element.textContent = number;
      });
      const badge = card.querySelector(".step-number");
      if (badge) badge.title = "Step " + number;
      const up = card.querySelector("button.move-up");
      const down = card.querySelector("button.move-down");
      if (up) up.disabled = position === 0;
      if (down) down.disabled = position === cards.length - 1;
    });
  }

  function markDirty(form) {
    if (form.classList.contains("is-dirty")) return;
    form.classList.add("is-dirty");  // the Save bars say "Unsaved changes."
  }

  function setUp(form) {
    if (!form || form.dataset.ready) return;
    form.dataset.ready = "true";
    const list = form.querySelector("#step-list");
    if (list && list.dataset.editable === "true" && window.Sortable) {
      window.Sortable.create(list, {
        handle: ".drag-handle",
        draggable: ".step-card",
        animation: 150,
        // Dropped over a text input, the card's text must not be typed into it.
        setData: function (dataTransfer) { dataTransfer.setData("text/plain", ""); },
        onEnd: function (event) {
          if (event.oldIndex === event.newIndex) return;
          renumber(list);
          markDirty(form);
        },
      });
    }
    // Choosing a type to add changes nothing yet: adding it does.
    function changed(event) {
      if (event.target.id !== "new-step-type") markDirty(form);
    }
    form.addEventListener("input", changed);
    form.addEventListener("change", changed);
    // A field the browser refuses may sit in a closed <details>: open it to show why.
    form.addEventListener("invalid", function (event) {
      const details = event.target.closest("details");
      if (details) details.open = true;
    }, true);
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUp(document.getElementById("editor-form"));
  });

  // After a save that failed, the errors may be far above the Save button: go to the first.
  function showFirstError(form) {
    const card = form.querySelector(".step-card.has-errors");
    const field = card && card.querySelector("[aria-invalid='true']");
    const target = field || card || form.querySelector(".editor-notices [role='alert']");
    if (!target) return;
    target.scrollIntoView({ block: "center" });
    if (field) field.focus({ preventScroll: true });
  }

  document.addEventListener("htmx:afterSettle", function (event) {
    const form = document.getElementById("editor-form");
    setUp(form);
    if (form && event.target === form) showFirstError(form);
    // A card added by "Add step": number it, and put the cursor in its name.
    const list = document.getElementById("step-list");
    if (list && event.target === list) {
      renumber(list);
      markDirty(form);
      const added = list.lastElementChild;
      const name = added && added.querySelector("input[name$='-_name']");
      if (name) name.focus();
    }
  });

  // Capture: the question comes before htmx (or the browser) sends anything.
  document.addEventListener("click", function (event) {
    const button = event.target.closest("button");
    if (!button || !button.form) return;
    let question = button.dataset.confirm;
    const editor = document.getElementById("editor-form");
    if (!question && button.hasAttribute("data-run") && editor && editor.classList.contains("is-dirty")) {
      question = "Your changes are not saved: the run uses the saved steps. Run anyway?";
    }
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
})();
