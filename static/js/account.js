// The Account dialog: change the password, or delete the account and all its data.
import { request } from "./api.js";
import { $, say } from "./dom.js";

const NOTICE_KEY = "sornmemory-notice"; // shown on the login screen after a reload

/** A message for the login screen, kept across the reload that follows a deletion. */
export function takeNotice() {
  const notice = sessionStorage.getItem(NOTICE_KEY);
  sessionStorage.removeItem(NOTICE_KEY);
  return notice;
}

/** Run `action` with the form's buttons disabled; its error is said in `alert`. */
export async function busy(form, alert, action) {
  say(alert, "");
  form.setAttribute("aria-busy", "true");
  for (const button of form.querySelectorAll("button")) button.disabled = true;
  try {
    await action();
  } catch (failure) {
    say(alert, failure.message);
  } finally {
    form.removeAttribute("aria-busy");
    for (const button of form.querySelectorAll("button")) button.disabled = false;
  }
}

/** The Account button opens the dialog, built afresh from its template each time (its
 * password fields exist only while it is open). */
export function setupAccount(root) {
  const dialog = $("#account", root);
  $("#account-open", root).addEventListener("click", () => {
    dialog.replaceChildren($("#account-template", root).content.cloneNode(true));
    $("#account-close", dialog).addEventListener("click", () => dialog.close());
    $("#password-form", dialog).addEventListener("submit", changePassword);
    $("#delete-form", dialog).addEventListener("submit", deleteAccount);
    dialog.showModal();
  });
  dialog.addEventListener("close", () => dialog.replaceChildren());
}

function changePassword(event) {
  event.preventDefault();
  const form = event.target;
  const status = $("#password-status", form);
  say(status, "");
  busy(form, $("#password-error", form), async () => {
    const body = { current_password: form.current.value, new_password: form.fresh.value };
    const { sessions_ended: ended } = await request("POST", "/api/account/password", body);
    form.reset();
    say(status, "Password changed." + (ended
      ? ` ${ended === 1 ? "1 other session was" : `${ended} other sessions were`} logged out.`
      : ""));
  });
}

function deleteAccount(event) {
  event.preventDefault();
  const form = event.target;
  busy(form, $("#delete-error", form), async () => {
    // Set first: the server closes this page's socket, which reloads the page, maybe
    // before the answer arrives.
    sessionStorage.setItem(NOTICE_KEY, "Your account and all its data were deleted.");
    try {
      await request("DELETE", "/api/account", { password: form.password.value });
    } catch (failure) {
      sessionStorage.removeItem(NOTICE_KEY);
      throw failure;
    }
    location.reload();
  });
}
