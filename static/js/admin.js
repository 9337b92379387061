// The admin's view (shown to the server's admins only): the sign-up switch and the
// accounts, each but the admin's own with buttons to make it admin or not and to delete it.
import { busy } from "./account.js";
import { listIn, request } from "./api.js";
import { $, h, say, when } from "./dom.js";

const SIGNUP_NOTES = {
  open: "Open: anyone who can reach this server can create an account.",
  closed: "Closed: nobody else can create an account; open it for a moment to let someone in.",
};
const CONFIGURED_NOTE = "Set by the server's configuration (SORNMEMORY_SIGNUP), so it cannot "
  + "be changed here: change it there and restart the server.";

export class AdminView {
  /** `me`: the signed-in admin, whose own row has no buttons (the Account dialog's job). */
  constructor(root, me) {
    this.me = me;
    this.signup = $("#admin-signup", root);
    this.note = $("#admin-signup-note", root);
    this.error = $("#admin-error", root);
    this.status = $("#admin-status", root);
    this.accountsTitle = $("#admin-accounts-title", root);
    this.users = $("#admin-users", root);
    this.dialog = $("#admin-delete", root);
    this.dialogTemplate = $("#admin-delete-template", root);
    this.signup.addEventListener("change", () => this.setSignup());
    this.dialog.addEventListener("close", () => this.dialog.replaceChildren());
  }

  /** Fetch the settings and the accounts again (each time the view is shown). */
  async load() {
    say(this.error, "");
    say(this.status, "");
    try {
      const [settings, users] = await Promise.all([
        request("GET", "/api/admin/settings"), request("GET", "/api/admin/users"),
      ]);
      this.showSettings(settings);
      this.showUsers(listIn(users, "users"));
    } catch (error) {
      say(this.error, error.message);
    }
  }

  /** Fetch the accounts again after a change; a failure is said, not thrown. */
  async reloadUsers() {
    try {
      this.showUsers(listIn(await request("GET", "/api/admin/users"), "users"));
    } catch (error) {
      say(this.error, error.message);
    }
  }

  showSettings({ signup, set_by: setBy }) {
    this.signup.checked = signup === "open";
    this.signup.disabled = setBy === "configuration";
    this.note.textContent = setBy === "configuration"
      ? `${SIGNUP_NOTES[signup]} ${CONFIGURED_NOTE}` : SIGNUP_NOTES[signup];
  }

  showUsers(users) {
    this.users.replaceChildren(...users.map((user) => h("tr", { dataset: { user: user.id } },
      h("td", {}, user.username),
      h("td", {}, when(user.created_at)),
      h("td", {}, user.is_admin ? "admin" : "user"),
      h("td", {}, user.id === this.me.id ? h("span", { class: "note" }, "you")
        : h("span", { class: "account-actions" },
          h("button", {
            type: "button", class: "small secondary role",
            "aria-label": `${user.is_admin ? "Remove admin" : "Make admin"}: ${user.username}`,
            onclick: () => this.setRole(user, !user.is_admin),
          }, user.is_admin ? "Remove admin" : "Make admin"),
          h("button", {
            type: "button", class: "small danger", "aria-label": `Delete ${user.username}`,
            onclick: () => this.confirmDelete(user),
          }, "Delete"))))));
  }

  async setRole(user, isAdmin) {
    say(this.error, "");
    say(this.status, "");
    try {
      await request("PUT", `/api/admin/users/${user.id}`, { is_admin: isAdmin });
      say(this.status, `${user.username} is ${isAdmin ? "now" : "no longer"} an admin.`);
    } catch (error) {
      say(this.error, error.message);
    }
    await this.reloadUsers();
    // The row was drawn again: keep the focus on its button.
    this.users.querySelector(`tr[data-user="${user.id}"] button.role`)?.focus();
  }

  /** The confirmation, naming the account and asking the admin's own password. */
  confirmDelete(user) {
    const dialog = this.dialog;
    dialog.replaceChildren(this.dialogTemplate.content.cloneNode(true));
    for (const who of dialog.querySelectorAll(".who")) who.textContent = user.username;
    $("#admin-delete-cancel", dialog).addEventListener("click", () => dialog.close());
    const form = $("#admin-delete-form", dialog);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(form, $("#admin-delete-error", form), async () => {
        await request("DELETE", `/api/admin/users/${user.id}`, { password: form.password.value });
        dialog.close();
        say(this.error, "");
        say(this.status, `${user.username}'s account and all its data were deleted.`);
        await this.reloadUsers();
        this.accountsTitle.focus(); // its row, and the button that was focused, are gone
      });
    });
    dialog.showModal();
  }

  async setSignup() {
    const wanted = this.signup.checked ? "open" : "closed";
    say(this.error, "");
    this.signup.disabled = true;
    try {
      this.showSettings(await request("PUT", "/api/admin/settings", { signup: wanted }));
    } catch (error) {
      this.signup.disabled = false;
      await this.load(); // show what the server has, not what was clicked
      say(this.error, error.message);
    }
  }
}
