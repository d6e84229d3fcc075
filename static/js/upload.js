/* Dataset upload with a progress bar.
 *
 * A form marked `data-upload` is posted with XMLHttpRequest so that the browser's upload
 * progress events can move its <progress> bar and percentage. The server answers a good
 * file with a redirect to the new version's page (followed here), and a refused file with
 * the form and its errors, which replaces the form in place. Without JavaScript the form
 * posts as a plain multipart form and the same pages come back.
 */
(function () {
  "use strict";

  function humanBytes(count) {
    var units = ["bytes", "KB", "MB", "GB"];
    var unit = 0;
    while (count >= 1024 && unit < units.length - 1) { count /= 1024; unit += 1; }
    return (unit ? count.toFixed(1) : count) + " " + units[unit];
  }

  function showProgress(form, percent, text) {
    var box = form.querySelector(".upload-progress");
    var bar = form.querySelector("progress");
    var label = form.querySelector(".upload-percent");
    box.hidden = false;
    bar.value = percent;
    bar.textContent = percent + "%";
    label.textContent = text || percent + "%";
  }

  function refuse(form, message) {
    var box = form.parentNode.querySelector(".client-error");
    if (!box) {
      box = document.createElement("div");
      box.className = "form-errors client-error";
      box.setAttribute("role", "alert");
      form.parentNode.insertBefore(box, form);
    }
    box.textContent = "";
    var line = document.createElement("p");
    var word = document.createElement("strong");
    word.textContent = "Error: ";
    line.appendChild(word);
    line.appendChild(document.createTextNode(message));
    box.appendChild(line);
  }

  function replaceForm(form, html) {
    var answer = new DOMParser().parseFromString(html, "text/html");
    var fresh = answer.getElementById("upload-form");
    var current = document.getElementById("upload-form");
    if (fresh && current) {
      current.replaceWith(fresh);
      var alert = fresh.querySelector("[role=alert]");
      if (alert) { alert.setAttribute("tabindex", "-1"); alert.focus(); }
    } else {
      document.open(); document.write(html); document.close();
    }
  }

  function upload(form) {
    var input = form.querySelector("input[type=file]");
    var file = input.files && input.files[0];
    var limit = parseInt(form.dataset.maxBytes, 10);
    if (!file) { refuse(form, "Choose a file to upload."); return; }
    if (limit && file.size > limit) {
      refuse(form, file.name + " is " + humanBytes(file.size) + "; the upload limit is " + humanBytes(limit) + ".");
      return;
    }
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    form.dataset.progressEvents = "0";
    showProgress(form, 0);

    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.upload.addEventListener("progress", function (event) {
      form.dataset.progressEvents = String(parseInt(form.dataset.progressEvents, 10) + 1);
      if (!event.lengthComputable) { return; }
      var percent = Math.round((event.loaded / event.total) * 100);
      showProgress(form, percent, percent + "% of " + humanBytes(event.total));
    });
    xhr.upload.addEventListener("load", function () {
      showProgress(form, 100, "100%: checking the file…");
    });
    xhr.addEventListener("load", function () {
      var redirected = xhr.responseURL && xhr.responseURL.split("#")[0] !== form.action;
      if (xhr.status === 200 && redirected) {
        window.location.assign(xhr.responseURL);
        return;
      }
      replaceForm(form, xhr.responseText);
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      form.removeAttribute("aria-busy");
      refuse(form, "The upload was interrupted (network error or the server refused it). Try again.");
    });
    xhr.send(new FormData(form));
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-upload]") || !window.FormData) { return; }
    event.preventDefault();
    upload(form);
  });
})();
